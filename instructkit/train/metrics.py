"""What the user sees during and after training: metrics.jsonl, TensorBoard, a loss-curve PNG."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class MetricsLog:
    """Appends one JSON object per logged step to ``metrics.jsonl`` (+ TensorBoard scalars).

    Only the main process writes. On resume the file is rewritten from the checkpoint's history so
    steps logged after the checkpoint by the killed run do not appear twice.
    """

    def __init__(self, run_dir: Path, *, enabled: bool, tensorboard: bool, history: list[dict] | None = None,
                 trackers: Any = None):
        self.path = run_dir / "metrics.jsonl"
        self.trackers = trackers  # train.report_to (train/trackers.py); None: none
        self.enabled = enabled
        self.history: list[dict[str, Any]] = list(history or [])
        self.tb = None
        if not enabled:
            return
        run_dir.mkdir(parents=True, exist_ok=True)
        self.path.write_text("".join(json.dumps(r) + "\n" for r in self.history))
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.tb = SummaryWriter(str(run_dir / "tb"))
            except ImportError:  # tensorboard is a declared dependency; a broken install only loses TB
                self.tb = None

    def log(self, row: dict[str, Any]) -> None:
        self.history.append(row)
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        if self.trackers is not None:
            self.trackers.log(row)
        if self.tb is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, (int, float)):
                    self.tb.add_scalar(k if "/" in k else ("eval/" + k[5:] if k.startswith("eval_") else "train/" + k),
                                       v, row["step"])

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def plot_loss(history: list[dict[str, Any]], out: Path) -> Path | None:
    """Train loss per logged step and eval loss per evaluation, one PNG."""
    train = [(r["step"], r["loss"]) for r in history if "loss" in r]
    evals = [(r["step"], r["eval_loss"]) for r in history if "eval_loss" in r]
    if not train and not evals:
        return None
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    if train:
        ax.plot(*zip(*train), label="train loss", lw=1.2)
    if evals:
        ax.plot(*zip(*evals), "o-", label="eval loss", lw=1.2)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (mean over trained tokens)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
