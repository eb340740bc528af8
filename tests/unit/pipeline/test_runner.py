"""The recipe runner: stage order, reference/cycle errors before anything runs, caching by fingerprint
(a changed eval setting re-runs only eval and report; stage calls counted), resume, --from/--until."""

from __future__ import annotations

from collections import Counter

import pytest

from instructkit.config.base import apply_overrides, validate
from instructkit.errors import ConfigError
from instructkit.pipeline import builtin, runner
from instructkit.config.recipe import Recipe


def _recipe(tmp_path, model_dir, **over) -> Recipe:
    d = {
        "name": "t", "output_dir": str(tmp_path / "run"), "seed": 0,
        "model": {"name_or_path": str(model_dir), "chat_template": "plain"},
        "mix": {"tasks": ["sentiment_movie", "nli_facts"], "hold_out": ["nli"], "cap": 6, "rate_cap": 6},
        "data": {"max_length": 256, "val_fraction": 0.0},
        "train": {"method": "full", "max_steps": 2, "pack_tokens": 512, "lr": 1e-3, "progress": False,
                  "tensorboard": False, "log_every": 1, "warmup_ratio": 0.0},
        "eval": {"tasks": ["sentiment_movie"], "limit": 2, "batch_size": 8},
        "stages": {
            "mix": {},
            "train": {"inputs": {"data": "mix.mixture"}},
            "eval": {"inputs": {"model": "train.model"}},
            "report": {"inputs": {"tuned": "eval"}},
        },
    }
    return validate(Recipe, apply_overrides(d, [f"{k}={v}" for k, v in over.items()]), "test")


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    from instructkit.models.tiny import save_tiny
    return save_tiny(str(tmp_path_factory.mktemp("tiny") / "m"))


@pytest.fixture
def calls(monkeypatch):
    c: Counter = Counter()
    for name in ("mix", "train", "evaluate", "report"):
        fn = getattr(builtin, name)

        def counted(ctx, cfg, _fn=fn, _name=name):
            c[_name] += 1
            return _fn(ctx, cfg)
        monkeypatch.setattr(builtin, name, counted)
    return c


def test_changed_eval_setting_reruns_only_eval_and_report(tmp_path, tiny_dir, calls, capsys):
    r1 = runner.run(_recipe(tmp_path, tiny_dir))
    assert calls == Counter(mix=1, train=1, evaluate=1, report=1)
    assert {n: v["status"] for n, v in r1.items()} == dict.fromkeys(["mix", "train", "eval", "report"], "ran")
    n1 = r1["eval"]["outputs"]["scores"]["sentiment_movie"]["n"]
    assert n1 >= 2

    # the same recipe again: everything cached, nothing called
    r2 = runner.run(_recipe(tmp_path, tiny_dir))
    assert calls == Counter(mix=1, train=1, evaluate=1, report=1)
    assert {v["status"] for v in r2.values()} == {"cached"}

    # one eval setting changed: only eval and report run again, and the plan says why
    rec = _recipe(tmp_path, tiny_dir, **{"eval.limit": 1})
    plan = {p.name: p for p in runner.plan(rec)}
    assert [n for n, p in plan.items() if p.status != "cached"] == ["eval", "report"]
    assert "eval.limit: 2 -> 1" in plan["eval"].reason
    assert "upstream eval" in plan["report"].reason
    r3 = runner.run(rec)
    assert calls == Counter(mix=1, train=1, evaluate=2, report=2)
    assert r3["train"]["status"] == "cached" and r3["eval"]["status"] == "ran"
    assert 1 <= r3["eval"]["outputs"]["scores"]["sentiment_movie"]["n"] < n1
    # the train stage's model fed the eval stage
    assert r3["eval"]["outputs"]["model"] == r1["train"]["outputs"]["model"]



def test_missing_reference_is_an_error_naming_the_stage_before_anything_runs(tmp_path, tiny_dir, calls):
    rec = _recipe(tmp_path, tiny_dir, **{"stages.eval.inputs.model": "trian.model"})
    with pytest.raises(ConfigError, match=r"stage 'eval': input 'model' refers to 'trian.model'.*no stage 'trian'"):
        runner.run(rec)
    rec = _recipe(tmp_path, tiny_dir, **{"stages.eval.inputs.model": "train.weights"})
    with pytest.raises(ConfigError, match=r"stage 'eval'.*train.weights.*no output 'weights'"):
        runner.run(rec)
    assert not calls and not (tmp_path / "run").exists()


def test_cycle_is_an_error_naming_the_stage(tmp_path, tiny_dir, calls):
    rec = _recipe(tmp_path, tiny_dir, **{"stages.mix.inputs.x": "report"})
    with pytest.raises(ConfigError, match=r"stage '(mix|train|eval|report)' is in a cycle: .*->"):
        runner.run(rec, dry_run=True)
    assert not calls and not (tmp_path / "run").exists()


def test_unknown_kind_and_error_location(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("name: x\nstages:\n  mix: {}\n  tune:\n    kind: trian\n")
    from instructkit.config.base import load_config
    with pytest.raises(ConfigError, match=r"r\.yaml:4: stage 'tune': unknown kind 'trian'"):
        runner.plan(load_config(Recipe, p), p)


def test_killed_stage_resumes_in_its_folder(tmp_path, monkeypatch):
    seen = []

    def flaky(ctx, cfg):
        seen.append(ctx.resuming)
        (ctx.out / "partial").write_text("x")
        if len(seen) == 1:
            raise KeyboardInterrupt  # killed mid-stage: no stage.json
        return {"report": str(ctx.out / "partial")}
    monkeypatch.setattr(builtin, "report", flaky)
    rec = validate(Recipe, {"name": "k", "output_dir": str(tmp_path / "run"), "stages": {"report": {}}}, "t")
    with pytest.raises(KeyboardInterrupt):
        runner.run(rec)
    assert runner.plan(rec)[0].status == "resume"
    runner.run(rec)
    assert seen == [False, True]
    assert runner.plan(rec)[0].status == "cached"


def test_until_and_from(tmp_path, monkeypatch):
    called = []
    monkeypatch.setattr(builtin, "report", lambda ctx, cfg: called.append(ctx.name) or {"report": "r"})
    rec = validate(Recipe, {"name": "u", "output_dir": str(tmp_path / "run"), "stages": {
        "a": {"kind": "report"}, "b": {"kind": "report", "inputs": {"x": "a"}}, "c": {"kind": "report"},
        "d": {"kind": "report", "inputs": {"y": "b.report"}}}}, "t")
    runner.run(rec, until="b")  # only b and what it needs
    assert called == ["a", "b"]
    runner.run(rec)  # a, b cached
    assert called == ["a", "b", "c", "d"]
    runner.run(rec, start="b")  # b and everything downstream of it, even though cached
    assert called == ["a", "b", "c", "d", "b", "d"]
    with pytest.raises(ConfigError, match="--until zz: no such stage"):
        runner.run(rec, until="zz")


def test_recipe_without_stages_runs_the_implied_chain(tmp_path):
    rec = validate(Recipe, {"name": "d", "output_dir": str(tmp_path / "run"), "mix": {"tasks": ["sentiment_movie"]},
                            "eval": {"tasks": ["sentiment_movie"]}}, "t")
    plan = runner.plan(rec)
    assert [(p.name, p.deps) for p in plan] == [("mix", {}), ("train", {"data": ("mix", "mixture")}),
                                                ("eval", {"model": ("train", "model")}),
                                                ("report", {"tuned": ("eval", None)})]


def test_report_tables_models_by_setting(tmp_path):
    from instructkit.pipeline.runner import StageContext
    from rich.console import Console

    def ev(v):
        return {"model": "m", "scores": {"gsm8k": {"format": "x", "n": 20, "metric": "exact_match", "value": v,
                                                   "ci": [v - 0.1, v + 0.1], "chance": 0.0}}}
    ctx = StageContext("report", "report", tmp_path, tmp_path, {"base/zero-shot": ev(0.1), "base/few-shot CoT": ev(0.2),
                                                                "cot/zero-shot": ev(0.3)}, None, "f", False,
                       Console(file=open(tmp_path / "log", "w")))
    rec = validate(Recipe, {"name": "r", "description": "d"}, "t")
    builtin.report(ctx, rec)
    md = (tmp_path / "report.md").read_text()
    assert "| model | zero-shot | few-shot CoT |" in md
    assert "| base | 0.100 [0.000, 0.200] | 0.200 [0.100, 0.300] |" in md
    assert "| cot | 0.300 [0.200, 0.400] |  |" in md


def test_cli_dry_run_prints_the_plan_and_runs_nothing(tmp_path):
    from typer.testing import CliRunner

    from instructkit.cli import app

    p = tmp_path / "r.yaml"
    p.write_text(f"name: c\noutput_dir: {tmp_path / 'run'}\nstages:\n  a: {{kind: report}}\n"
                 "  b: {kind: report, inputs: {x: a}}\n")
    res = CliRunner().invoke(app, ["run", str(p), "--dry-run"])
    assert res.exit_code == 0, res.output
    assert "a " in res.output and "report" in res.output and "not run before" in res.output
    assert not (tmp_path / "run").exists()
    res = CliRunner().invoke(app, ["run", str(p), "stages.a.inputs.x=b", "--dry-run"])
    assert isinstance(res.exception, ConfigError) and "is in a cycle" in str(res.exception)


def test_demo_is_a_recipe_run(tmp_path):
    """`instructkit demo` = the runner on the demo's stages: per seed a tuned and an oracle training, all feeding
    one held-out report (the base scored once)."""
    from instructkit.demo import demo_recipe, with_stages

    rec = with_stages(demo_recipe(tmp_path / "demo", "smollm2-135m-instruct", 40, None, "lora", 2e-3), 150, 200, 3,
                      seeds=3, oracle_epochs=2.0)
    plan = {p.name: p for p in runner.plan(rec)}
    assert set(plan) == {f"{k}{s}" for k in ("mix", "train", "oracle_mix", "oracle") for s in ("", "_1", "_2")} | {
        "eval", "report"}
    assert plan["eval"].deps == {"manifest": ("mix", "manifest"),
                                 **{f"tuned{s}": (f"train{s}", "model") for s in ("", "_1", "_2")},
                                 **{f"oracle{s}": (f"oracle{s}", "model") for s in ("", "_1", "_2")}}
    assert plan["eval"].cfg.limit == 200 and plan["oracle_mix"].cfg.mix.cap == 150
    assert set(plan["oracle_mix"].cfg.mix.tasks) == {"nli_facts", "nli_numbers", "coref_gender", "coref_role"}
    # each seed draws its own mixture and init; the oracle trains its declared epochs, otherwise the same
    assert [plan[f"mix{s}"].cfg.seed for s in ("", "_1", "_2")] == [0, 1, 2]
    assert [plan[f"train{s}"].cfg.seed for s in ("", "_1", "_2")] == [0, 1, 2]
    assert plan["oracle"].cfg.train.epochs == 2.0 and plan["oracle"].cfg.train.max_steps is None
    assert plan["oracle"].cfg.train.lr == plan["train"].cfg.train.lr
    assert plan["eval"].cfg.preregistered["seeds"] == 3
