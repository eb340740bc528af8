"""Issue 24 item 18 (this part): ``config show/check`` take the recipe either way; ``template-check`` exits 0
with its verdict unless the template cannot render chat data; an interrupted ``run`` names the ``run``
command that resumes; training says its plan at once and an ETA after the first micro-batch; ``tools
call`` exits 2 like every other error."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from instructkit.cli import app

REPO = Path(__file__).resolve().parents[2]
RECIPE = REPO / "recipes" / "alpaca.yaml"


def _main(monkeypatch, capsys, *args):
    from instructkit.cli import main
    monkeypatch.setattr(sys, "argv", ["instructkit", *args])
    monkeypatch.setenv("COLUMNS", "300")
    with pytest.raises(SystemExit) as e:
        main()
    out = capsys.readouterr()
    return e.value.code or 0, out.out + out.err


def test_config_show_takes_the_recipe_positionally_or_by_option():
    a = CliRunner().invoke(app, ["config", "show", str(RECIPE), "train.lr=1e-4"])
    b = CliRunner().invoke(app, ["config", "show", "--config", str(RECIPE), "train.lr=1e-4"])
    assert a.exit_code == 0 and b.exit_code == 0, (a.output, b.output)
    assert a.output == b.output and "lr: 0.0001" in a.output
    c = CliRunner().invoke(app, ["config", "show", "--config", str(RECIPE), str(RECIPE)])
    assert c.exit_code != 0 and "one recipe file" in str(c.exception)


def test_config_check_takes_the_recipe_positionally_or_by_option():
    for args in ([str(RECIPE)], ["--config", str(RECIPE)], ["-c", str(RECIPE), str(RECIPE)]):
        r = CliRunner().invoke(app, ["config", "check", *args])
        assert r.exit_code == 0 and f"ok  {RECIPE}" in r.output, (args, r.output)


def test_template_check_exit_codes(tiny_model_dir, tmp_path):
    r = CliRunner().invoke(app, ["data", "template-check", tiny_model_dir])
    assert r.exit_code == 0 and "verdict: fine for plain chat" in r.output, r.output  # was 1
    broken = tmp_path / "broken.jinja"  # renders no assistant turn at all: unusable for training
    broken.write_text("{% for m in messages %}{% if m.role == 'user' %}{{ m.content }}\n{% endif %}{% endfor %}")
    r = CliRunner().invoke(app, ["data", "template-check", tiny_model_dir, "--template", str(broken)])
    assert r.exit_code == 1 and "cannot render chat data" in r.output, r.output


def test_interrupted_run_stage_names_the_run_command(tmp_path, monkeypatch, capsys):
    import instructkit.pipeline.runner as runner
    from instructkit.train.interrupt import TrainingInterrupted

    def interrupted(*a, **kw):
        raise TrainingInterrupted("SIGINT", 3, 6, tmp_path / "run" / "sft" / "checkpoint-3")
    monkeypatch.setattr(runner, "run", interrupted)
    rc, out = _main(monkeypatch, capsys, "run", str(RECIPE), "train.lr=1e-4", "--from", "sft")
    assert rc == 130 and "--resume" not in out, out
    assert f"resume with: instructkit run {RECIPE} train.lr=1e-4" in out and "--from" not in out.split("resume")[-1]


def test_train_cli_interrupt_still_names_train_resume(tmp_path, monkeypatch, capsys):
    import instructkit.train.api as api
    from instructkit.train.interrupt import TrainingInterrupted

    monkeypatch.setattr(api, "train", lambda r: (_ for _ in ()).throw(TrainingInterrupted("SIGTERM", 1, 2, None)))
    (tmp_path / "r.yaml").write_text(f"output_dir: {tmp_path / 'run'}\n")
    rc, out = _main(monkeypatch, capsys, "train", "--config", str(tmp_path / "r.yaml"))
    assert rc == 130 and f"resume with: instructkit train --config {tmp_path / 'r.yaml'} --resume" in out
    assert "plus --resume" not in out


def test_training_says_its_plan_at_once_and_an_eta_after_one_micro_batch(tmp_path, tiny_model_dir, caplog):
    import random

    from instructkit.chat import Conversation
    from instructkit.config.base import load_config
    from instructkit.config.recipe import Recipe
    from instructkit.models import load_model
    from instructkit.train import train

    rng = random.Random(0)
    ex = [Conversation.from_pairs(" ".join(rng.choices("a b c d e".split(), k=6)), "yes no") for _ in range(12)]
    r = load_config(Recipe, None, [f"model.name_or_path={tiny_model_dir}", f"output_dir={tmp_path / 'run'}",
                                   "train.progress=false", "train.tensorboard=false", "train.pack_tokens=64",
                                   "data.max_length=64", "train.max_steps=3", "train.grad_accum=2",
                                   "train.micro_batch_size=1", "train.packing=false"])
    model = load_model(str(tiny_model_dir))
    seen_at_forward = []  # the log messages so far, at each training forward (2 per step here)
    model.get_decoder().register_forward_hook(
        lambda *a: seen_at_forward.append(list(caplog.messages)) if model.training else None)
    with caplog.at_level(logging.INFO, logger="instructkit.train"):
        train(r, examples=ex, model=model)
    # the model probes before training also run forwards: the loop's are those after the plan was said
    in_loop = [msgs for msgs in seen_at_forward if any(m.startswith("plan: 3 optimizer steps") for m in msgs)]
    assert len(in_loop) == 6, len(in_loop)  # the plan came before the first training forward
    assert not any(m.startswith("first micro-batch") for m in in_loop[0])
    at_second_forward = in_loop[1]  # step 1 is not over yet: its second micro-batch is running
    eta = [m for m in at_second_forward if m.startswith("first micro-batch took")]
    assert eta and "for the 3 steps left (2 micro-batches each" in eta[0], at_second_forward


def test_tools_call_failure_exits_2():
    r = CliRunner().invoke(app, ["tools", "call", "calculator", '{"expression": "1/0"}'])
    assert r.exit_code == 2 and r.output.startswith("error"), r.output
