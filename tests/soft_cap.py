"""A tiny Gemma-2 with final-logit soft-capping, for the tests of code that re-implements the LM head
(training probe, eval scoring at scored positions)."""

from __future__ import annotations

import torch


def gemma2_soft_capped(tokenizer, cap=2.0):
    from transformers import Gemma2Config, Gemma2ForCausalLM

    cfg = Gemma2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, head_dim=8, final_logit_softcapping=cap,
                       max_position_embeddings=256, pad_token_id=tokenizer.pad_token_id,
                       eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id,
                       attn_implementation="eager")
    torch.manual_seed(0)
    m = Gemma2ForCausalLM(cfg).eval()
    with torch.no_grad():  # logits large enough for the cap to matter
        m.get_output_embeddings().weight.mul_(40)
    return m
