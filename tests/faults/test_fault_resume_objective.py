"""Issue 24 item 14: ``--resume`` refuses a run whose objective settings changed since the checkpoint."""

from __future__ import annotations

import pytest

from instructkit.config.base import load_config
from instructkit.config.recipe import Recipe
from instructkit.errors import ConfigError
from instructkit.train import train
from instructkit.train.fingerprint import check_resume, objective_settings

from test_fault_preference import _recipe, pairs_file  # noqa: E402  (same folder)


def test_dpo_resume_with_another_beta_is_refused(tmp_path, tiny_model_dir):
    data = pairs_file(tmp_path / "p.jsonl")
    train(_recipe(tmp_path, tiny_model_dir, data, "train.max_steps=2", "train.save_every=1"))
    with pytest.raises(ConfigError) as ei:
        train(_recipe(tmp_path, tiny_model_dir, data, "train.max_steps=2", "train.resume=auto",
                      "train.dpo.beta=0.5"))
    msg = str(ei.value)
    assert "not the same run" in msg and "train.dpo.beta: checkpoint 0.1, now 0.5" in msg, msg
    # the same settings resume (nothing refused)
    train(_recipe(tmp_path, tiny_model_dir, data, "train.max_steps=2", "train.resume=auto"))


def _settings(*overrides):
    return objective_settings(load_config(Recipe, None, list(overrides)).train)


@pytest.mark.parametrize("before, after, named", [
    (["train.objective=dpo"], ["train.objective=dpo", "train.dpo.loss=ipo"], "train.dpo.loss: checkpoint 'sigmoid'"),
    (["train.objective=dpo", "train.dpo.loss=simpo"], ["train.objective=dpo", "train.dpo.loss=simpo",
                                                      "train.dpo.simpo_gamma=0.3"], "train.dpo.simpo_gamma"),
    (["train.objective=dpo"], ["train.objective=reward"], "train.objective: checkpoint 'dpo', now 'reward'"),
    (["train.muppet.generative_weight=1.0"], ["train.muppet.generative_weight=0.5"],
     "train.muppet.generative_weight: checkpoint 1.0, now 0.5"),
    (["train.objective=dpo"], ["train.objective=dpo", "train.dpo.label_smoothing=0.1"], "label_smoothing"),
])
def test_every_objective_setting_is_in_the_fingerprint(before, after, named):
    saved = {"fingerprint": {"seed": 1, "objective": _settings(*before)}}
    check_resume(saved, {"seed": 1, "objective": _settings(*before)}, "ckpt")  # unchanged: accepted
    with pytest.raises(ConfigError, match="not the same run") as ei:
        check_resume(saved, {"seed": 1, "objective": _settings(*after)}, "ckpt")
    assert named in str(ei.value)


def test_checkpoint_without_objective_settings_still_resumes():
    check_resume({"fingerprint": {"seed": 1}}, {"seed": 1, "objective": _settings("train.objective=dpo")}, "c")
