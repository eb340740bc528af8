"""Methods (full / LoRA / DoRA / QLoRA), config validation before any step, export of merged adapters."""

from __future__ import annotations

import json
import random

import pytest
import torch

from instructkit.chat import Conversation
from instructkit.config.base import load_config
from instructkit.config.recipe import Recipe
from instructkit.errors import ConfigError
from instructkit.train import export_merged, train

WORDS = "the a of to and in is it you that he was for on are with as his they be at one have this".split()


def convs(n=24, seed=0):
    rng = random.Random(seed)
    return [Conversation.from_pairs(" ".join(rng.choices(WORDS, k=rng.randint(2, 12))),
                                    " ".join(rng.choices(WORDS[:6], k=rng.randint(2, 10)))) for _ in range(n)]


def recipe(tmp_path, model_dir, *extra):
    return load_config(Recipe, None, [f"model.name_or_path={model_dir}", f"output_dir={tmp_path / 'run'}",
                                      "train.progress=false", "train.tensorboard=false", "train.log_every=1",
                                      "train.pack_tokens=256", "data.max_length=128", "train.lr=3e-3",
                                      "train.warmup_ratio=0", "train.scheduler=constant", *extra])


def losses(res):
    return [r["loss"] for r in map(json.loads, res.metrics_path.read_text().splitlines()) if "loss" in r]


def test_lora_target_matching_nothing_fails_before_training(tmp_path, tiny_model_dir):
    r = recipe(tmp_path, tiny_model_dir, "train.method=lora", "train.lora.target_modules=[q_proj,qkv_proj]")
    with pytest.raises(ConfigError, match=r"qkv_proj.*match no module"):
        train(r, examples=convs())
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


@pytest.mark.parametrize("extra, message", [
    (["train.pack_tokens=64"], "pack_tokens=64 is below data.max_length=128"),
    (["data.max_length=10", "train.pack_tokens=64"], "data.max_length=10 leaves no room"),
    (["train.eval_every=2"], "no validation data"),
])
def test_config_problems_named_before_any_step(tmp_path, tiny_model_dir, extra, message):
    with pytest.raises(ConfigError, match=message):
        train(recipe(tmp_path, tiny_model_dir, *extra), examples=convs())


def test_unknown_key_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown key 'train.lora.rank'"):
        load_config(Recipe, None, ["train.lora.rank=8"])


def test_dora_trains_adapter_only_and_export_merges(tmp_path, tiny_model_dir):
    r = recipe(tmp_path, tiny_model_dir, "train.method=dora", "train.max_steps=4", "train.lora.r=4",
               "train.lora.dropout=0", "train.lora.target_modules=[q_proj,v_proj,down_proj]")
    res = train(r, examples=convs())
    s = res.summary
    assert s["method"] == "dora" and 0 < s["trainable_params"] < s["total_params"] / 5
    assert (res.model_dir / "adapter_model.safetensors").is_file()
    assert not (res.model_dir / "model.safetensors").exists()
    out = export_merged(res.model_dir, tmp_path / "merged")
    from instructkit.models import load_model
    merged = load_model(str(out)).eval()
    adapter = load_model(str(res.model_dir)).eval()  # base + adapter via peft
    x = torch.tensor([[5, 17, 99, 300, 2, 41, 7]])
    with torch.no_grad():
        a, b = adapter(input_ids=x).logits, merged(input_ids=x).logits
        base = load_model(tiny_model_dir)(input_ids=x).logits
    assert (base - a).abs().max() > 1e-4  # the adapter changed something
    assert (a - b).abs().max() < 1e-4


def test_qlora_nf4_loss_decreases_on_tiny(tmp_path, tiny_model_dir):
    r = recipe(tmp_path, tiny_model_dir, "train.method=qlora", "train.max_steps=8", "train.lora.r=8",
               "train.lora.dropout=0", "train.optimizer=paged_adamw", "train.lr=1e-2", "train.gradient_checkpointing=true")
    ex = convs(4, seed=3)  # a few examples seen repeatedly: the loss must go down
    res = train(r, examples=ex)
    ls = losses(res)
    # paged_adamw falls back to AdamW on CPU
    assert res.summary["optimizer"] == ("PagedAdamW" if torch.cuda.is_available() else "AdamW")
    assert type(res.model.base_model.model.model.layers[0].self_attn.q_proj.base_layer).__name__ == "Linear4bit"
    assert sum(ls[-2:]) / 2 < ls[0] - 0.05, ls


def test_full_adafactor_constant_with_eval_and_best(tmp_path, tiny_model_dir):
    r = recipe(tmp_path, tiny_model_dir, "train.optimizer=adafactor", "train.max_steps=6", "train.eval_every=2",
               "train.best_metric=eval_score", "train.best_mode=max", "train.micro_batch_size=2")
    calls = []

    def eval_fn(model):
        calls.append(model.training)
        return {"score": -len(calls) if len(calls) != 2 else 10.0}  # best at the 2nd evaluation (step 4)

    res = train(r, examples=convs(), eval_examples=convs(6, seed=9), eval_fn=eval_fn)
    rows = [json.loads(x) for x in res.metrics_path.read_text().splitlines()]
    evals = [x for x in rows if "eval_loss" in x]
    assert [x["step"] for x in evals] == [2, 4, 6] and calls == [False] * 3
    assert all(x["lr"] == pytest.approx(3e-3) for x in rows if "lr" in x)  # constant LR
    assert res.summary["optimizer"] == "Adafactor" and res.summary["best"] == {"eval_score": 10.0}
    assert (res.best_dir / "model.safetensors").is_file()
    assert (res.output_dir / "loss.png").stat().st_size > 1000
    for k in ("hardware", "wall_time_s", "real_tokens_per_s", "peak_rss_mib", "trainable_params", "effective_batch",
              "precision"):
        assert k in res.summary


@pytest.mark.parametrize("name, method", [("sft_full", "full"), ("sft_lora", "lora"), ("sft_qlora", "qlora")])
def test_example_recipes_load_and_point_to_shipped_data(name, method):
    from pathlib import Path
    root = Path(__file__).resolve().parents[3]
    r = load_config(Recipe, root / "recipes" / f"{name}.yaml", ["train.max_steps=3"])
    assert r.train.method == method and r.train.max_steps == 3
    for p in r.data.paths:
        assert (root / p).is_file(), p


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_gradient_checkpointing_keeps_lora_losses(tmp_path, tiny_model_dir, dtype):
    """The demo's memory lever (one layer's activations kept instead of all): LoRA with dropout (its masks
    are replayed in the recomputation), fp32 or bf16 with fp32 master weights: the same losses step by step."""
    runs = []
    for gc in ("false", "true"):
        r = recipe(tmp_path / gc, tiny_model_dir, "train.method=lora", "train.max_steps=4", "train.lora.r=4",
                   "train.lora.dropout=0.1", f"model.dtype={dtype}", f"train.gradient_checkpointing={gc}")
        runs.append(losses(train(r, examples=convs())))
    assert len(runs[0]) == 4
    assert runs[0] == pytest.approx(runs[1], rel=1e-6 if dtype == "float32" else 1e-3)
