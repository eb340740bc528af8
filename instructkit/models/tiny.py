"""Tiny models and a tokenizer the project builds itself, for unit tests, benchmarks and docs.

Nothing is downloaded: the tokenizer is a byte-level BPE trained in well under a second on
procedurally generated text, so every byte string is encodable; its special tokens and ChatML
template mirror SmolLM2's (including pad == eos, the case where EOS must still be learned).
"""

from __future__ import annotations

import random
from functools import lru_cache
from typing import Any

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
_WORDS = ("the a an of to and in is it you that he was for on are with as his they be at one have this "
          "from or had by word but what some we can out other were all there when up use your how said "
          "each she which do their time if will way about many then them write would like so these her "
          "long make thing see him two has look more day could go come did number sound no most people "
          "my over know water than call first who may down side been now find answer question true false "
          "yes because review positive negative sentence premise hypothesis summary topic sum plus minus "
          "zero one two three four five six seven eight nine ten hundred assistant user system tool").split()


def _corpus(n: int = 3000, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        k = rng.randint(3, 14)
        words = [rng.choice(_WORDS) for _ in range(k)]
        if rng.random() < 0.3:
            words.append(str(rng.randint(0, 999)))
        s = " ".join(words)
        lines.append(s.capitalize() + rng.choice([".", "?", "!", ":", "\n", ""]))
    return lines


@lru_cache(maxsize=4)
def _tokenizer_json(vocab_size: int) -> str:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    # trim_offsets=False: offsets cover the token's bytes exactly (the renderer maps spans by offset)
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(_corpus(), trainer=trainer)
    return tok.to_str()


def make_tiny_tokenizer(vocab_size: int = 1024) -> Any:
    """A fast HF tokenizer with ChatML template, eos = pad = ``<|im_end|>``, bos = ``<|im_start|>``."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    from instructkit.chat.render import resolve_template

    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(_tokenizer_json(vocab_size)),
                                  bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<|im_end|>",
                                  unk_token="<|endoftext|>")
    tok.chat_template = resolve_template("chatml")
    tok.model_max_length = 4096
    return tok


def make_tiny_model(tokenizer: Any = None, *, hidden_size: int = 64, num_layers: int = 2, num_heads: int = 4,
                    num_kv_heads: int = 2, intermediate_size: int = 128, seed: int = 0,
                    attn_implementation: str = "sdpa", tie_word_embeddings: bool = False) -> Any:
    """A random-init Llama built from a config (same architecture family as SmolLM2)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = tokenizer or make_tiny_tokenizer()
    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=intermediate_size,
                      num_hidden_layers=num_layers, num_attention_heads=num_heads,
                      num_key_value_heads=num_kv_heads, max_position_embeddings=4096,
                      bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                      pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=tie_word_embeddings,
                      attn_implementation=attn_implementation)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = LlamaForCausalLM(cfg)
    model.eval()
    return model


def save_tiny(path: str, **kwargs: Any) -> str:
    """Write a tiny model + tokenizer as an HF folder (for tests of the path-loading code)."""
    tok = make_tiny_tokenizer()
    model = make_tiny_model(tok, **kwargs)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path
