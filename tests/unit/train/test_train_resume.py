"""Checkpoints resume exactly (weights, optimizer, scheduler, RNG with dropout, data position mid-epoch)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from instructkit.config.base import load_config
from instructkit.config.recipe import Recipe
from instructkit.train import train
from instructkit.train.checkpoint import list_checkpoints

from test_train_methods import convs  # noqa: E402  (same folder)


def _recipe(out, model_dir, *extra):
    return load_config(Recipe, None, [f"model.name_or_path={model_dir}", f"output_dir={out}", "train.progress=false",
                                      "train.tensorboard=false", "train.log_every=1", "train.pack_tokens=64",
                                      "data.max_length=64", "train.lr=5e-3", "train.max_steps=7", "train.save_every=2",
                                      "train.keep_last=5", "train.warmup_steps=2", *extra])


def _losses(path):
    return {r["step"]: r["loss"] for r in map(json.loads, path.read_text().splitlines()) if "loss" in r}


def test_resume_from_checkpoint_reproduces_the_run(tmp_path, tiny_model_dir):
    # LoRA with dropout: the RNG state matters (full fine-tuning is covered by the SIGKILL integration test)
    extra = ["train.method=lora", "train.lora.dropout=0.3", "train.lora.r=4", "train.micro_batch_size=2",
             "train.grad_accum=2"]
    ex = convs(20)
    full = train(_recipe(tmp_path / "a", tiny_model_dir, *extra), examples=ex)
    names = [p.name for p in list_checkpoints(tmp_path / "a")]
    assert names == ["checkpoint-2", "checkpoint-4", "checkpoint-6", "checkpoint-7"]
    # 20 examples -> 10 rows of <= 64 tokens -> 5 micro-batches of 2 -> 3 steps per epoch (the last one partial)
    state = [json.loads((tmp_path / "a" / n / "trainer_state.json").read_text()) for n in names]
    assert [(s["epoch"], s["step_in_epoch"]) for s in state] == [(0, 2), (1, 1), (2, 0), (2, 1)]
    # resume mid-epoch from step 4 in a fresh run folder
    (tmp_path / "b").mkdir()
    shutil.copytree(tmp_path / "a" / "checkpoint-4", tmp_path / "b" / "checkpoint-4")
    resumed = train(_recipe(tmp_path / "b", tiny_model_dir, *extra, "train.resume=auto"), examples=ex)
    a, b = _losses(full.metrics_path), _losses(resumed.metrics_path)
    assert sorted(b) == list(range(1, 8))  # history up to the checkpoint + the resumed steps
    assert max(abs(a[s] - b[s]) for s in a) < 1e-6, (a, b)
    pa = torch.cat([p.detach().flatten() for p in full.model.parameters()])
    pb = torch.cat([p.detach().flatten() for p in resumed.model.parameters()])
    assert torch.equal(pa, pb)


def test_resume_path_must_be_a_checkpoint(tmp_path, tiny_model_dir):
    from instructkit.errors import ConfigError
    with pytest.raises(ConfigError, match="not a checkpoint folder"):
        train(_recipe(tmp_path / "c", tiny_model_dir, f"train.resume={tmp_path}"), examples=convs(4))
