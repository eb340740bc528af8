"""SmolLM2: packed rows give the same per-token log-probs as examples run one by one; a short LoRA run learns."""

from __future__ import annotations

import json

import pytest
import torch

from instructkit.chat import Conversation, Renderer
from instructkit.config.base import load_config
from instructkit.config.recipe import Recipe
from instructkit.train.packing import make_rows, to_examples

pytestmark = pytest.mark.integration

PAIRS = [("What is the capital of France?", "Paris."),
         ("Give the opposite of hot.", "Cold."),
         ("Write the plural of mouse.", "Mice."),
         ("What is 3 plus 4?", "3 plus 4 is 7."),
         ("Name a mammal that can fly.", "A bat.")]


def test_packed_logprobs_equal_one_by_one_smollm2(smollm2_model, smollm2_tokenizer):
    import sys
    from pathlib import Path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "unit" / "train"))
    from test_train_packing import check_packed_equals_unpacked

    r = Renderer(smollm2_tokenizer)
    recs = [{"input_ids": x.input_ids, "labels": x.input_ids} for x in (r(Conversation.from_pairs(p, c))
                                                                          for p, c in PAIRS)]
    ex, _ = to_examples(recs, None)
    check_packed_equals_unpacked(smollm2_model, ex, atol=1e-4)


def test_short_lora_run_on_smollm2(tmp_path, smollm2_path, smollm2_tokenizer):
    from instructkit.train import train

    r = load_config(Recipe, None, [f"model.name_or_path={smollm2_path}", f"output_dir={tmp_path / 'run'}",
                                   "train.method=lora", "train.lora.r=8", "train.lora.dropout=0",
                                   "train.lora.target_modules=[q_proj,v_proj]", "train.lr=2e-3", "train.max_steps=3",
                                   "train.scheduler=constant", "train.warmup_ratio=0", "train.pack_tokens=128",
                                   "data.max_length=128", "train.log_every=1", "train.progress=false",
                                   "train.tensorboard=false"])
    convs = [Conversation.from_pairs(p, c) for p, c in PAIRS[:3]]
    res = train(r, examples=convs, tokenizer=smollm2_tokenizer)
    losses = [x["loss"] for x in map(json.loads, res.metrics_path.read_text().splitlines()) if "loss" in x]
    assert len(losses) == 3 and losses[-1] < losses[0], losses
    assert (res.model_dir / "adapter_model.safetensors").is_file()
    assert res.summary["trainable_params"] < 0.01 * res.summary["total_params"]


@pytest.mark.slow
def test_qlora_on_smollm2_learns(tmp_path, smollm2_path, smollm2_tokenizer):
    """NF4 + double quantization + LoRA on every linear layer of SmolLM2 (slow on CPU: 4-bit matmuls)."""
    from instructkit.train import train

    r = load_config(Recipe, None, [f"model.name_or_path={smollm2_path}", f"output_dir={tmp_path / 'run'}",
                                   "train.method=qlora", "train.lora.r=16", "train.lora.alpha=16",
                                   "train.lora.dropout=0", "train.lora.target_modules=[all-linear]", "train.lr=2e-3",
                                   "train.max_steps=3", "train.scheduler=constant", "train.warmup_ratio=0",
                                   "train.optimizer=paged_adamw", "train.pack_tokens=128", "data.max_length=128",
                                   "train.log_every=1", "train.progress=false", "train.tensorboard=false"])
    res = train(r, examples=[Conversation.from_pairs(p, c) for p, c in PAIRS[:3]], tokenizer=smollm2_tokenizer)
    losses = [x["loss"] for x in map(json.loads, res.metrics_path.read_text().splitlines()) if "loss" in x]
    assert losses[-1] < losses[0], losses
    assert type(res.model.base_model.model.model.layers[0].mlp.down_proj.base_layer).__name__ == "Linear4bit"
