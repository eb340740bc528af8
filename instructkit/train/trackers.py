"""Experiment trackers (``train.report_to``): TensorBoard, W&B, MLflow, trackio through accelerate's trackers.

Each tracker gets the same four things: the recipe as its config, every logged step's metrics, the data
report (what the data stage kept and dropped) and the final summary. Offline by default, because
nothing here may reach the network unless the user says so:

* tensorboard: event files under ``RUN/tb/trackers`` (the plain per-step scalars stay in ``RUN/tb``);
* wandb: ``WANDB_MODE=offline`` and ``WANDB_DIR=RUN`` unless set (``wandb sync RUN/wandb/...`` uploads);
* mlflow: the file store ``RUN/mlruns`` unless ``MLFLOW_TRACKING_URI`` is set (``mlflow ui --backend-store-uri
  RUN/mlruns`` shows it; MLflow 3 needs ``MLFLOW_ALLOW_FILE_STORE=true`` for it, which is set by default here);
* trackio: local mode (no Space) in ``RUN/trackio`` unless ``TRACKIO_DIR`` is set (``trackio show``);
  trackio reads ``TRACKIO_DIR`` when first imported, so set it yourself if trackio is imported earlier.

A tracker whose package is missing is an error before training starts, naming the pip command.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Callable, Iterable

from instructkit.errors import ConfigError

TRACKERS = ("tensorboard", "wandb", "mlflow", "trackio")
_PACKAGES = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow", "trackio": "trackio"}
log = logging.getLogger("instructkit.train")


def _tensorboard(run_dir: Path, name: str, config: dict[str, Any]) -> Any:
    from accelerate.tracking import TensorBoardTracker
    return TensorBoardTracker(name, run_dir / "tb" / "trackers")


def _wandb(run_dir: Path, name: str, config: dict[str, Any]) -> Any:
    from accelerate.tracking import WandBTracker
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_DIR", str(run_dir))
    return WandBTracker(name, dir=str(run_dir), name=name)


def _mlflow(run_dir: Path, name: str, config: dict[str, Any]) -> Any:
    import mlflow
    from accelerate.tracking import MLflowTracker
    if not os.environ.get("MLFLOW_TRACKING_URI"):
        # MLflow 3 keeps the file store but refuses it unless allowed; a server or sqlite:/// URI the user
        # sets in MLFLOW_TRACKING_URI is used as it is
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        mlflow.set_tracking_uri((run_dir / "mlruns").resolve().as_uri())
    return MLflowTracker(experiment_name="instructkit", run_name=name)


def _trackio(run_dir: Path, name: str, config: dict[str, Any]) -> Any:
    os.environ.setdefault("TRACKIO_DIR", str(run_dir / "trackio"))
    from accelerate.tracking import TrackioTracker
    # the config goes in at init: trackio stores a run's config once (later updates are not saved)
    return TrackioTracker("instructkit", name=name, embed=False, config=config)


_BUILDERS: dict[str, Callable[[Path, str, dict[str, Any]], Any]] = {"tensorboard": _tensorboard, "wandb": _wandb,
                                                    "mlflow": _mlflow, "trackio": _trackio}


def check_trackers(names: Iterable[str]) -> list[str]:
    """Validate ``train.report_to`` before anything loads: known names whose packages are installed."""
    import importlib.util

    names = list(dict.fromkeys(names))
    for n in names:
        if n not in _BUILDERS:
            raise ConfigError(f"train.report_to: unknown tracker {n!r}; choose from {', '.join(TRACKERS)}")
        if importlib.util.find_spec(_PACKAGES[n]) is None:
            raise ConfigError(f"train.report_to: {n} needs the package {_PACKAGES[n]!r}: pip install "
                              f"{_PACKAGES[n]} (or pip install 'instructkit[trackers]')")
    return names


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in (d or {}).items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flat(v, key + "."))
        elif isinstance(v, (bool, int, float, str)) or v is None:
            out[key] = v
        else:
            out[key] = json.dumps(v, default=str)
    return out


def _numbers(d: dict[str, Any], prefix: str) -> dict[str, float]:
    return {prefix + k: float(v) for k, v in _flat(d).items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


class Trackers:
    """The trackers of one run (main process only; other ranks get an empty one)."""

    def __init__(self, names: Iterable[str], run_dir: Path, *, config: dict[str, Any], enabled: bool = True,
                 name: str | None = None):
        """``config``: the recipe (nested dict), stored flat (``train.lr``) as each tracker's config."""
        self.names = check_trackers(names) if enabled else []
        self.run_dir = Path(run_dir)
        self.items: list[tuple[str, Any]] = []
        values = {k: ("" if v is None else v) for k, v in _flat(config).items()}
        for n in self.names:
            tracker = _BUILDERS[n](self.run_dir, name or self.run_dir.name, values)
            tracker.start()
            if n != "trackio":
                tracker.store_init_configuration(values)
            self.items.append((n, tracker))

    def log(self, row: dict[str, Any]) -> None:
        values = {k: v for k, v in row.items() if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)}
        for _, t in self.items:
            t.log(values, step=row.get("step"))

    def text(self, key: str, payload: dict[str, Any], step: int = 0) -> None:
        """A report: its numbers as metrics ``key/...`` and the whole of it as text/JSON where the tracker
        keeps text (TensorBoard text, MLflow artifact, W&B summary; trackio keeps the numbers only)."""
        numbers, body = _numbers(payload, key + "/"), json.dumps(payload, indent=1, default=str)
        for n, t in self.items:
            if numbers:
                t.log(numbers, step=step)
            if n == "tensorboard":
                t.writer.add_text(key, "```\n" + body + "\n```", global_step=step)
                t.writer.flush()
            elif n == "mlflow":
                import mlflow
                mlflow.log_text(body, f"{key}.json")
            elif n == "wandb":
                t.run.summary.update({key: payload})

    def finish(self) -> None:
        for n, t in self.items:
            try:
                t.finish()
            except Exception as e:  # a tracker failing to close must not lose the finished run
                log.warning("tracker %s did not close cleanly: %s", n, e)
        self.items = []
