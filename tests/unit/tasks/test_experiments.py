"""The held-out experiment's steps (instructkit.experiments.heldout): oracle recipe, end-to-end wiring."""

import json

import pytest

from instructkit.config.base import validate
from instructkit.errors import ConfigError
from instructkit.experiments.heldout import cluster_lines, oracle_recipe, run_heldout
from instructkit.config.recipe import Recipe


def _recipe(tmp_path, model="smollm2-135m-instruct"):
    return validate(Recipe, {
        "name": "exp", "output_dir": str(tmp_path / "run"), "seed": 0,
        "model": {"name_or_path": model, "chat_template": "plain"},
        "mix": {"tasks": ["sentiment_movie", "nli_facts"], "hold_out": ["nli"], "cap": 8, "rate_cap": 8,
                "formats": {"zero_shot": 0.5, "few_shot": 0.5}},
        "data": {"max_length": 256},
        "train": {"method": "full", "lr": 1e-3, "max_steps": 2, "micro_batch_size": 1, "grad_accum": 1,
                  "pack_tokens": 512, "scheduler": "constant", "warmup_ratio": 0.0, "tensorboard": False,
                  "progress": False, "log_every": 1},
    }, "test")


def test_oracle_recipe_trains_on_the_held_out_tasks_with_the_same_settings(tmp_path):
    r = _recipe(tmp_path)
    o = oracle_recipe(r, ["nli_facts"], per_task=50, train={"max_steps": 7})
    assert o.mix.tasks == ["nli_facts"] and o.mix.hold_out == [] and o.mix.cap == o.mix.rate_cap == 50
    assert o.mix.formats == r.mix.formats and o.mix.options_prob == r.mix.options_prob
    assert o.model == r.model and o.train.lr == r.train.lr and o.train.max_steps == 7
    assert r.train.max_steps == 2 and r.mix.tasks == ["sentiment_movie", "nli_facts"]  # the original is untouched
    with pytest.raises(ConfigError, match="held-out tasks"):
        oracle_recipe(r, [])


def test_run_heldout_end_to_end_on_a_tiny_model(tmp_path, tiny_model_dir, capsys):
    r = _recipe(tmp_path, tiny_model_dir)
    rep = run_heldout(r, tmp_path / "run", oracle_per_task=8, limit=6, templates="one", max_seen=1,
                      dtype="float32", batch_size=4, command="test", seeds=2)
    exp = json.loads((tmp_path / "run" / "experiment.json").read_text())
    assert exp["held_out_refs"] == ["nli_facts"] and exp["oracle"] and exp["command"] == "test"
    assert set(exp["timing"]) == {"tuned: mix + train", "oracle: mix + train", "tuned: mix + train_seed1",
                                  "oracle: mix + train_seed1", "report: evaluate all models"}
    # the oracle trained on the held-out task only; the tuned model never saw it
    oracle_man = json.loads((tmp_path / "run" / "oracle" / "mix" / "manifest.json").read_text())
    tuned_man = json.loads((tmp_path / "run" / "tuned" / "mix" / "manifest.json").read_text())
    assert list(oracle_man["tasks"]) == ["nli_facts"] and oracle_man["tasks"]["nli_facts"]["count"] == 8
    assert "nli_facts" not in tuned_man["train_tasks"]
    held = [c for c in rep["clusters"] if c["held_out"]]
    assert [c["cluster"] for c in held] == ["nli"] and held[0]["n_examples"] == 6
    assert set(held[0]["scores"]) == {"base", "tuned", "tuned@1", "oracle", "oracle@1"}
    lines = cluster_lines(rep)
    assert lines[0].startswith("nli") and "oracle" in lines[0] and "chance 0.333" in lines[0]
    # issue #25: per seed a tuned and an oracle model; the held-out cluster carries the controls and a verdict
    c = next(c for c in rep["clusters"] if c["held_out"])
    ctl = c["controls"]
    assert ctl["tuned"]["n_seeds"] == 2 and ctl["oracle"]["n_seeds"] == 2 and ctl["chance"] == pytest.approx(1 / 3)
    assert {"content-free calibrated", "masked-slot calibrated"} == set(ctl["calibrated_base"])
    assert len(ctl["tuned_seeds"]) == 2 and all(len(s["delta_calibrated"]) == 3 for s in ctl["tuned_seeds"])
    assert ctl["base"]["consistency"] is not None  # nli_facts twins (entailment <-> contradiction)
    assert c["decision"]["verdict"] in ("transfer", "prior shift", "no detectable effect")
    assert c["verdict"].startswith("nli: ") and "rule:" in c["verdict"]
    md = (tmp_path / "run" / "report" / "report.md").read_text()
    assert "## Controls" in md and "calibrated base" in md and "Rules (checked in this order)" in md
    from rich.console import Console

    from instructkit.eval.cli import print_report
    print_report(Console(width=200), rep)
    out = capsys.readouterr().out
    assert "controls" in out and "predicted shares" in out and "tuned@1" in out
