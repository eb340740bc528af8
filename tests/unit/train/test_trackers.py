"""train.report_to: config, per-step metrics, data report and summary reach each tracker, offline."""

from __future__ import annotations

import json
import time

import pytest

from instructkit.config.base import load_config
from instructkit.config.recipe import Recipe
from instructkit.errors import ConfigError
from instructkit.train import train


def _run(tmp_path, model_dir, tracker, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    data = tmp_path / "d.jsonl"
    recs = [{"prompt": f"say {i}", "completion": f"ok {i}"} for i in range(8)] + [{"prompt": "x", "completion": ""}]
    data.write_text("".join(json.dumps(r) + "\n" for r in recs))
    r = load_config(Recipe, None, [f"model.name_or_path={model_dir}", f"output_dir={tmp_path / 'run'}",
                                   f"data.paths=[{data}]", "data.on_error=skip", "data.num_proc=1", "data.max_length=40",
                                   f"data.cache_dir={tmp_path / 'cache'}", "train.max_steps=3", "train.log_every=1",
                                   "train.progress=false", "train.tensorboard=false", "train.pack_tokens=64",
                                   f"train.report_to=[{tracker}]", "train.lr=0.001"])
    return train(r)


def test_mlflow_file_store(tmp_path, tiny_model_dir, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")

    res = _run(tmp_path, tiny_model_dir, "mlflow", monkeypatch)
    store = tmp_path / "run" / "mlruns"
    assert store.is_dir()  # the file store in the run folder: nothing went to a server
    client = MlflowClient(tracking_uri=store.resolve().as_uri())
    (run,) = client.search_runs([client.get_experiment_by_name("instructkit").experiment_id])
    assert run.data.params["train.lr"] == "0.001" and run.data.params["train.max_steps"] == "3"
    hist = client.get_metric_history(run.info.run_id, "loss")
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    want = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    assert len(want) == 3 and res.summary["steps"] == 3
    assert [(m.step, m.value) for m in sorted(hist, key=lambda m: m.step)] == pytest.approx(want)
    assert run.data.metrics["data/read"] == 9 and run.data.metrics["data/skipped"] == 1
    assert run.data.metrics["summary/steps"] == 3
    arts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"data.json", "summary.json"} <= arts
    assert run.info.status == "FINISHED"


def test_trackio_local(tmp_path, tiny_model_dir, monkeypatch):
    import sqlite3
    import sys

    if "trackio" in sys.modules:  # trackio fixes its folder when first imported
        monkeypatch.setenv("TRACKIO_DIR", str(sys.modules["trackio"].utils.TRACKIO_DIR))
    else:
        monkeypatch.delenv("TRACKIO_DIR", raising=False)  # default: RUN/trackio
    import importlib.util

    if importlib.util.find_spec("trackio") is None:
        pytest.skip("trackio not installed")
    _run(tmp_path, tiny_model_dir, "trackio", monkeypatch)
    import trackio.utils

    if "TRACKIO_DIR" not in __import__("os").environ or trackio.utils.TRACKIO_DIR == tmp_path / "run" / "trackio":
        assert trackio.utils.TRACKIO_DIR == tmp_path / "run" / "trackio"  # local mode, in the run folder
    dbs = list(trackio.utils.TRACKIO_DIR.glob("instructkit*.db"))
    assert dbs, list(trackio.utils.TRACKIO_DIR.iterdir())
    con = sqlite3.connect(dbs[0])
    rid = str(tmp_path / "run")
    rows = [json.loads(m) for (m,) in con.execute("SELECT metrics FROM metrics WHERE run_name = ? ORDER BY step",
                                                  ("run",))]
    assert sum("loss" in r for r in rows) == 3
    assert any(r.get("data/read") == 9 for r in rows) and any(r.get("summary/steps") == 3 for r in rows)
    cfgs = [json.loads(c) for (c,) in con.execute("SELECT config FROM configs")]
    assert any(c.get("train.lr") == 0.001 and c.get("output_dir") == rid for c in cfgs)


def test_tensorboard_tracker(tmp_path, tiny_model_dir, monkeypatch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _run(tmp_path, tiny_model_dir, "tensorboard", monkeypatch)
    (logdir,) = [p for p in (tmp_path / "run" / "tb" / "trackers").iterdir() if p.is_dir()]
    ev = EventAccumulator(str(logdir), size_guidance={"tensors": 0, "scalars": 0}).Reload()
    assert [e.step for e in ev.Scalars("loss")] == [1, 2, 3]
    assert ev.Scalars("data/read")[0].value == 9
    assert {"data/text_summary", "summary/text_summary"} <= set(ev.Tags()["tensors"])


def test_unknown_or_missing_tracker_fails_before_loading(tmp_path, monkeypatch):
    import importlib.util

    from instructkit.train.trackers import check_trackers

    with pytest.raises(ConfigError, match="unknown tracker 'neptune'"):
        check_trackers(["neptune"])
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "wandb" else real(n, *a))
    with pytest.raises(ConfigError, match="pip install wandb"):
        check_trackers(["wandb"])


def test_wandb_offline(tmp_path, tiny_model_dir, monkeypatch):
    pytest.importorskip("wandb")
    for k in ("WANDB_MODE", "WANDB_DIR", "WANDB_API_KEY"):
        monkeypatch.delenv(k, raising=False)
    _run(tmp_path, tiny_model_dir, "wandb", monkeypatch)
    (run,) = (tmp_path / "run" / "wandb").glob("offline-run-*")  # offline: nothing was sent
    (log,) = run.glob("run-*.wandb")  # the run's record log (protobuf); keys are stored as plain UTF-8
    keys = (b"train.lr", b"loss", b"grad_norm", b"data/read", b"data/kept", b"summary/steps", b"summary/final_loss")
    for _ in range(60):  # wandb's service process may still be flushing the log after finish()
        if all(k in log.read_bytes() for k in keys):
            break
        time.sleep(0.5)
    blob = log.read_bytes()
    assert [k for k in keys if k not in blob] == []
