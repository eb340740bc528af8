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


@pytest.mark.parametrize("change, named", [
    ("train.grad_accum=1", "train.grad_accum"),
    ("train.max_steps=9", "number of optimizer steps"),
    ("seed=3", "the seed"),
    ("DATA", "training rows themselves"),
])
def test_resume_refuses_a_different_run_naming_the_change(tmp_path, tiny_model_dir, change, named):
    from instructkit.errors import ConfigError

    extra = ["train.micro_batch_size=2", "train.grad_accum=2", "train.max_steps=3"]
    ex = convs(12)
    train(_recipe(tmp_path / "a", tiny_model_dir, *extra), examples=ex)
    again = [*extra, "train.resume=auto"] + ([change] if change != "DATA" else [])
    data = convs(12)[::-1] if change == "DATA" else ex  # same examples, other order -> other rows
    with pytest.raises(ConfigError, match=named):
        train(_recipe(tmp_path / "a", tiny_model_dir, *again), examples=data)


def test_resume_refuses_a_checkpoint_without_this_ranks_rng_state(tmp_path, tiny_model_dir):
    from instructkit.errors import ConfigError

    res = train(_recipe(tmp_path / "a", tiny_model_dir, "train.max_steps=2"), examples=convs(8))
    (res.last_checkpoint / "rng_state_0.pt").unlink()
    with pytest.raises(ConfigError, match="rng_state_0.pt is missing"):
        train(_recipe(tmp_path / "a", tiny_model_dir, "train.max_steps=2", "train.resume=auto"), examples=convs(8))


def test_clipping_gets_all_parameters_so_fsdp_clips_by_the_global_norm(tmp_path, tiny_model_dir, monkeypatch):
    """accelerate hands clipping to FSDP (norm over all shards) only when the list it gets IS
    model.parameters(); LoRA's filtered trainable list fell through to each rank's local norm.
    (accelerate runs FSDP on CUDA only - on CPU it is MULTI_CPU/DDP - so this checks the hand-over.)"""
    from accelerate import Accelerator

    seen = []

    def spy(self, parameters, max_norm, norm_type=2):
        parameters = list(parameters)
        seen.append(parameters == list(self._models[0].parameters()))
        return torch.nn.utils.clip_grad_norm_(parameters, max_norm, norm_type)

    monkeypatch.setattr(Accelerator, "clip_grad_norm_", spy)
    train(_recipe(tmp_path / "a", tiny_model_dir, "train.method=lora", "train.max_steps=2"), examples=convs(8))
    assert seen == [True, True]
