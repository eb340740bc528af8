"""Never lose a run: SIGINT mid-step checkpoints and resumes exactly; a full disk keeps the last checkpoint;
the run folder is not overwritten silently."""

from __future__ import annotations

import errno
import json
import os
import signal

import pytest
import torch

from instructkit.config.base import load_config
from instructkit.config.recipe import Recipe
from instructkit.errors import InstructkitError
from instructkit.models import load_model
from instructkit.train import train
from instructkit.train.checkpoint import list_checkpoints
from instructkit.train.interrupt import TrainingInterrupted

from test_train_methods import convs  # noqa: E402  (same folder)


def _recipe(out, model_dir, *extra):
    # save_every=0 (the default): before the fix an interrupted run kept nothing at all
    return load_config(Recipe, None, [f"model.name_or_path={model_dir}", f"output_dir={out}", "train.progress=false",
                                      "train.tensorboard=false", "train.log_every=1", "train.pack_tokens=64",
                                      "data.max_length=64", "train.lr=5e-3", "train.max_steps=6",
                                      "train.micro_batch_size=2", "train.grad_accum=2", "train.warmup_steps=2",
                                      *extra])


def _losses(path):
    return {r["step"]: r["loss"] for r in map(json.loads, path.read_text().splitlines()) if "loss" in r}


def _signal_at_forward(model, n, sig=signal.SIGINT, times=1):
    """Send ``sig`` to this process ``times`` times during the n-th forward call (mid-step: the first of the
    step's two micro-batches)."""
    calls = {"n": 0}

    def hook(module, args, kwargs):
        handler = signal.getsignal(sig)
        if getattr(handler, "__self__", None).__class__.__name__ != "GracefulStop":
            return  # a forward outside the training loop (model checks before training)
        calls["n"] += 1
        if calls["n"] == n:
            for _ in range(times):
                os.kill(os.getpid(), sig)
    model.get_decoder().register_forward_pre_hook(hook, with_kwargs=True)
    return model


def test_sigint_mid_step_checkpoints_and_resumes_to_the_same_curve(tmp_path, tiny_model_dir, capsys):
    ex = convs(20)
    full = train(_recipe(tmp_path / "a", tiny_model_dir), examples=ex)
    before = signal.getsignal(signal.SIGINT)
    model = _signal_at_forward(load_model(str(tiny_model_dir)), n=5)  # forward 5 = step 3, micro-batch 1
    with pytest.raises(TrainingInterrupted) as ei:
        train(_recipe(tmp_path / "b", tiny_model_dir), examples=ex, model=model)
    e = ei.value
    assert e.exit_code == 130 and e.step == 3 and e.checkpoint == tmp_path / "b" / "checkpoint-3"
    assert "SIGINT after step 3/6" in str(e) and "--resume" in str(e)
    assert "finishing the current step" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGINT) is before  # handlers restored
    assert [p.name for p in list_checkpoints(tmp_path / "b")] == ["checkpoint-3"]
    assert not list((tmp_path / "b").glob(".tmp-*"))
    resumed = train(_recipe(tmp_path / "b", tiny_model_dir, "train.resume=auto"), examples=ex)
    a, b = _losses(full.metrics_path), _losses(resumed.metrics_path)
    assert sorted(b) == list(range(1, 7))
    assert max(abs(a[s] - b[s]) for s in a) < 1e-6, (a, b)
    pa = torch.cat([p.detach().flatten() for p in full.model.parameters()])
    pb = torch.cat([p.detach().flatten() for p in resumed.model.parameters()])
    assert torch.equal(pa, pb)


def test_second_signal_stops_at_once_and_leaves_no_temp_folder(tmp_path, tiny_model_dir):
    model = _signal_at_forward(load_model(str(tiny_model_dir)), n=3, sig=signal.SIGTERM, times=2)
    with pytest.raises(KeyboardInterrupt):
        train(_recipe(tmp_path / "c", tiny_model_dir), examples=convs(20), model=model)
    assert list_checkpoints(tmp_path / "c") == []
    assert not list((tmp_path / "c").glob(".tmp-*"))


def test_disk_full_at_checkpoint_keeps_last_good_one(tmp_path, tiny_model_dir, monkeypatch):
    import instructkit.train.checkpoint as ck

    real_save, calls = torch.save, {"n": 0}

    def full_disk(obj, f, *a, **kw):  # the 2nd checkpoint's optimizer.pt hits ENOSPC
        if str(f).endswith("optimizer.pt"):
            calls["n"] += 1
            if calls["n"] == 2:
                raise OSError(errno.ENOSPC, "No space left on device", str(f))
        return real_save(obj, f, *a, **kw)

    monkeypatch.setattr(ck.torch, "save", full_disk)
    run = tmp_path / "d"
    with pytest.raises(InstructkitError) as ei:
        train(_recipe(run, tiny_model_dir, "train.save_every=2"), examples=convs(20))
    msg = str(ei.value)
    assert msg == (f"{run / 'checkpoint-4'}: cannot write: no space left on device; "
                   f"the last good checkpoint {run / 'checkpoint-2'} is kept"), msg
    assert [p.name for p in list_checkpoints(run)] == ["checkpoint-2"]
    assert not list(run.glob(".tmp-*"))
    assert (run / "checkpoint-2" / "optimizer.pt").is_file()


def test_safetensors_disk_full_at_final_model_is_one_line(tmp_path, tiny_model_dir, monkeypatch):
    from safetensors import SafetensorError

    import instructkit.train.checkpoint as ck

    real = ck.save_weights

    def weights(acc, wrapper, tok, out, **kw):
        if out.name == ".tmp-model":
            raise SafetensorError("Error while serializing: IoError(Os { code: 28, kind: StorageFull, "
                                  "message: \"No space left on device\" })")
        return real(acc, wrapper, tok, out, **kw)

    monkeypatch.setattr(ck, "save_weights", weights)
    run = tmp_path / "e"
    with pytest.raises(InstructkitError, match=r"model: cannot write: .*No space left on device"):
        train(_recipe(run, tiny_model_dir, "train.max_steps=2"), examples=convs(8))
    assert not list(run.glob(".tmp-*")) and (run / "checkpoint-2").is_dir()


# -- the run folder rule (CLI) ----------------------------------------------------------------------------
def _cli(args):
    from typer.testing import CliRunner

    from instructkit.cli import app
    return CliRunner().invoke(app, args)


def test_train_refuses_existing_run_without_resume(tmp_path):
    from instructkit.train.cli import prepare_run_dir

    run = tmp_path / "run"
    (run / "checkpoint-4").mkdir(parents=True)
    (run / "checkpoint-4" / "trainer_state.json").write_text("{}")
    with pytest.raises(InstructkitError, match="already holds a training run.*--resume.*--overwrite"):
        prepare_run_dir(run, resume=False, overwrite=False)
    prepare_run_dir(run, resume=True, overwrite=False)  # continue: kept
    assert (run / "checkpoint-4").is_dir()
    prepare_run_dir(run, resume=False, overwrite=True)  # start over: old checkpoints go
    assert not (run / "checkpoint-4").exists() and (run / ".instructkit").is_file()


def test_train_refuses_a_foreign_folder_and_an_unwritable_one(tmp_path):
    from instructkit.train.cli import prepare_run_dir

    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    with pytest.raises(InstructkitError, match="not empty and was not written by instructkit.*thesis.tex"):
        prepare_run_dir(mine, resume=False, overwrite=False)
    with pytest.raises(InstructkitError, match="/proc/nope/run: output folder is not writable"):
        prepare_run_dir(__import__("pathlib").Path("/proc/nope/run"), resume=False, overwrite=False)
    assert (mine / "thesis.tex").read_text() == "precious"


def test_resume_without_checkpoint_says_it_starts_fresh(tmp_path, caplog):
    from instructkit.train.checkpoint import resolve_resume

    with caplog.at_level("WARNING", logger="instructkit.train"):
        assert resolve_resume("auto", tmp_path) is None
    assert "no checkpoint in" in caplog.text and "starting fresh" in caplog.text


def test_export_refuses_run_folder_and_keeps_it(tmp_path, tiny_model_dir):
    run = tmp_path / "run"
    (run / "checkpoint-2").mkdir(parents=True)
    (run / "notes.txt").write_text("mine")
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": str(tiny_model_dir)}))
    r = _cli(["export", "--adapter", str(adapter), "--out", str(run)])
    assert r.exit_code != 0 and "refusing to write the export output there" in str(r.exception)
    assert "--overwrite" in str(r.exception) and (run / "notes.txt").read_text() == "mine"
    assert (run / "checkpoint-2").is_dir()


def _main(monkeypatch, capsys, *args):
    import sys

    from instructkit.cli import main
    monkeypatch.setattr(sys, "argv", ["instructkit", *args])
    with pytest.raises(SystemExit) as e:
        main()
    out = capsys.readouterr()
    return e.value.code or 0, out.out + out.err


def test_cli_interrupt_exits_130_with_resume_command(tmp_path, monkeypatch, capsys):
    import instructkit.train.api as api

    def interrupted(recipe):
        raise TrainingInterrupted("SIGINT", 3, 6, tmp_path / "run" / "checkpoint-3")

    monkeypatch.setattr(api, "train", interrupted)
    (tmp_path / "r.yaml").write_text(f"output_dir: {tmp_path / 'run'}\n")
    rc, out = _main(monkeypatch, capsys, "train", "--config", str(tmp_path / "r.yaml"), "train.lr=1e-4")
    assert rc == 130 and "interrupted by SIGINT after step 3/6" in out
    assert f"resume with: instructkit train --config {tmp_path / 'r.yaml'} train.lr=1e-4 --resume" in out
    assert "Traceback" not in out


def test_cli_train_into_existing_run_stops_before_loading(tmp_path, monkeypatch, capsys):
    import instructkit.train.api as api

    monkeypatch.setattr(api, "train", lambda recipe: pytest.fail("must stop before training"))
    run = tmp_path / "run"
    (run / "checkpoint-2").mkdir(parents=True)
    (run / "checkpoint-2" / "trainer_state.json").write_text("{}")
    (tmp_path / "r.yaml").write_text(f"output_dir: {run}\n")
    rc, out = _main(monkeypatch, capsys, "train", "--config", str(tmp_path / "r.yaml"))
    assert rc == 2 and "already holds a training run (checkpoint-2)" in out and "--resume" in out
