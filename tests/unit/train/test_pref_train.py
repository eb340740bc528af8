"""Preference objectives on the engine: reference cache reuse (no reference forward in training), cache
invalidation, reward-model accuracy above chance, exact resume."""

from __future__ import annotations

import json
import math
import random
import shutil

import pytest
import torch

from instructkit.config.base import load_config
from instructkit.config.recipe import Recipe
from instructkit.data.tasks.suite.generators import add_sub
from instructkit.errors import ConfigError
from instructkit.train import train
from instructkit.train.preference import refcache


def arithmetic_pairs(path, n, seed=0):
    """Task-suite arithmetic: the chosen answer shows the correct working; the rejected one states a wrong
    total without working - clearly worse."""
    rng = random.Random(seed)
    with open(path, "w") as f:
        for _ in range(n):
            row = add_sub(rng)
            wrong = int(row["answer"]) + rng.choice([-7, -3, -1, 1, 2, 5])
            f.write(json.dumps({"prompt": row["question"], "chosen": row["rationale"],
                                "rejected": f"It is {wrong}."}) + "\n")
    return path


def _recipe(tmp_path, name, model_dir, data, *extra):
    return load_config(Recipe, None, [
        f"name={name}", f"model.name_or_path={model_dir}", f"output_dir={tmp_path / name}", f"data.paths=[{data}]",
        "data.max_length=160", "train.objective=dpo", "train.pack_tokens=320", "train.micro_batch_size=2",
        "train.lr=1e-3", "train.max_steps=3", "train.log_every=1", "train.progress=false", "train.tensorboard=false",
        f"train.dpo.ref_cache_dir={tmp_path / 'refcache'}", *extra])


def _count_forwards(lm):
    calls = []
    lm.get_decoder().register_forward_hook(lambda *a: calls.append(1))
    return calls


def test_reference_cached_reused_and_invalidated(tmp_path, tiny_model_dir):
    from instructkit.models import load_model
    data = arithmetic_pairs(tmp_path / "p.jsonl", 8)
    extra = ["data.val_fraction=0.25", "train.eval_every=2", "train.max_steps=2"]
    runs, calls = [], []
    for name in ("cold", "warm"):
        lm = load_model(tiny_model_dir)
        calls.append(_count_forwards(lm))
        before = refcache.FORWARDS
        runs.append(train(_recipe(tmp_path, name, tiny_model_dir, data, *extra), model=lm))
        runs[-1].ref_forwards = refcache.FORWARDS - before
    cold, warm = runs
    d = cold.summary["data"]
    # cold: one reference pass per row (train + held-out), all before the first step
    assert cold.ref_forwards == d["rows"] + d["eval_rows"] > 0
    assert d["reference_train"]["hit"] is False and d["reference_eval"]["hit"] is False
    # warm (same data, model, template, max length): cache hit, no reference pass at all; the decoder ran
    # exactly the reference passes fewer times - training itself never runs a reference forward
    assert warm.ref_forwards == 0 and warm.summary["data"]["reference_train"]["hit"] is True
    assert len(calls[0]) - len(calls[1]) == cold.ref_forwards
    assert [r["loss"] for r in _rows(cold)] == pytest.approx([r["loss"] for r in _rows(warm)], abs=1e-6)
    # a different template is a different cache entry
    other = train(_recipe(tmp_path, "other", tiny_model_dir, data, *extra, "model.chat_template=vicuna"))
    assert other.summary["data"]["reference_train"]["hit"] is False
    assert other.summary["data"]["reference_train"]["cache"] != d["reference_train"]["cache"]


@pytest.mark.parametrize("method", ["full", "lora"])
def test_bf16_mixed_precision_reference_equals_the_policy_at_step_zero(tmp_path, tiny_model_dir, method):
    """bf16 mixed precision (fp32 master weights, bf16 autocast): the reference pass runs under the same
    autocast as the policy, so before any update every reward is 0 and the first loss is exactly ln 2. Computed
    outside autocast, the fp32 reference differs from the bf16 policy by rounding (0.6997 on SmolLM2)."""
    data = arithmetic_pairs(tmp_path / "p.jsonl", 8)
    res = train(_recipe(tmp_path, method, tiny_model_dir, data, "model.dtype=bfloat16", f"train.method={method}",
                        "train.max_steps=1", "train.dpo.beta=1.0"))
    assert "mixed precision" in res.summary["precision"]
    assert _rows(res)[0]["loss"] == pytest.approx(math.log(2), abs=1e-6)


def _rows(res):
    return [r for r in map(json.loads, res.metrics_path.read_text().splitlines()) if "loss" in r]


def test_reward_model_accuracy_rises_above_chance(tmp_path, tiny_model_dir):
    data = arithmetic_pairs(tmp_path / "p.jsonl", 48, seed=1)
    res = train(_recipe(tmp_path, "rm", tiny_model_dir, data, "train.objective=reward", "train.max_steps=10",
                        "train.lr=2e-3", "data.val_fraction=0.3", "train.eval_every=10", "train.log_every=5",
                        "train.warmup_steps=0"))
    rows = [json.loads(x) for x in res.metrics_path.read_text().splitlines()]
    held_out = [r["eval_reward_accuracy"] for r in rows if "eval_reward_accuracy" in r]
    assert held_out[-1] >= 0.8, rows  # 14 held-out pairs; chance is 0.5 (P(>= 12/14) < 1%)
    assert [r["eval_loss"] for r in rows if "eval_loss" in r][-1] < 0.6931  # better than a coin (log 2)
    assert (res.model_dir / "model.safetensors").is_file() and res.model.config.num_labels == 1
    # the saved folder is a ranker for the judge / synth preferences: new pairs, chosen mostly scored higher
    from instructkit.lm.reward import RewardScorer
    new = [json.loads(x) for x in arithmetic_pairs(tmp_path / "new.jsonl", 8, seed=99).read_text().splitlines()]
    scorer = RewardScorer(str(res.model_dir))
    prompts = [[{"role": "user", "content": r["prompt"]}] for r in new]
    good = scorer.score(prompts, [r["chosen"] for r in new])
    bad = scorer.score(prompts, [r["rejected"] for r in new])
    assert sum(g > b for g, b in zip(good, bad)) >= 6


def test_reward_objective_refuses_adapters(tmp_path, tiny_model_dir):
    data = arithmetic_pairs(tmp_path / "p.jsonl", 4)
    with pytest.raises(ConfigError, match="train.objective=reward trains full weights"):
        train(_recipe(tmp_path, "x", tiny_model_dir, data, "train.objective=reward", "train.method=lora"))


@pytest.mark.slow  # the SIGKILL test (test_pref_kill_resume.py) covers DPO resume in CI
def test_dpo_resume_from_checkpoint_is_exact(tmp_path, tiny_model_dir):
    data = arithmetic_pairs(tmp_path / "p.jsonl", 12)
    extra = ["train.max_steps=4", "train.save_every=2", "train.keep_last=5", "train.grad_accum=2",
             "train.method=lora", "train.lora.r=4", "train.lora.dropout=0.2"]
    full = train(_recipe(tmp_path, "a", tiny_model_dir, data, *extra))
    (tmp_path / "b").mkdir()
    shutil.copytree(tmp_path / "a" / "checkpoint-2", tmp_path / "b" / "checkpoint-2")
    resumed = train(_recipe(tmp_path, "b", tiny_model_dir, data, *extra, "train.resume=auto"))
    a, b = _rows(full), _rows(resumed)
    assert [r["step"] for r in b] == list(range(1, 5))
    for x, y in zip(a, b):
        for k in ("loss", "logps_chosen", "reward_accuracy"):
            assert x[k] == pytest.approx(y[k], abs=1e-6), (k, x, y)
    pa = torch.cat([p.detach().flatten() for p in full.model.parameters()])
    pb = torch.cat([p.detach().flatten() for p in resumed.model.parameters()])
    assert torch.equal(pa, pb)
