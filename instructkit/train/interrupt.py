"""Ctrl-C / SIGTERM during training: finish the step, checkpoint, say how to resume, exit 130.

:class:`GracefulStop` installs SIGINT and SIGTERM handlers for the duration of the training loop:

* the first signal only sets a flag; the loop checks it after each optimizer step (:meth:`requested`),
  writes a checkpoint of that step and raises :class:`TrainingInterrupted` (exit status 130, the shell's
  convention for "killed by SIGINT"), whose message names the checkpoint and how to resume;
* a second signal raises ``KeyboardInterrupt`` at once (stop now, e.g. a step that takes too long);
  a checkpoint being written is then abandoned and its ``.tmp-`` folder removed.

Multi-process runs: every rank gets the signal from the terminal, but not necessarily during the same
step, so the ranks agree (an all-reduce of the flag, only when there is more than one process) before
anyone stops: they all checkpoint the same step.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from instructkit.errors import InstructkitError

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(InstructkitError):
    """Training stopped on a signal after checkpointing; ``checkpoint`` is where to resume from."""

    exit_code = 130

    def __init__(self, signame: str, step: int, total_steps: int, checkpoint: Path | None):
        self.signame, self.step, self.checkpoint = signame, step, checkpoint
        where = f"checkpoint saved to {checkpoint}" if checkpoint else "no checkpoint written"
        self.head = f"interrupted by {signame} after step {step}/{total_steps}: {where}"
        # API callers get the generic hint; each CLI names its own exact command (resume_with)
        super().__init__(f"{self.head}; resume with train.resume=auto (instructkit train: add --resume)")

    def resume_with(self, command: str) -> "TrainingInterrupted":
        """Say the exact command that resumes (``instructkit train ... --resume``, or the same ``instructkit
        run`` line: a pipeline stage resumes from its checkpoints by itself)."""
        self.args = (f"{self.head}\n  resume with: {command}",)
        return self


class GracefulStop:
    """Context manager: first SIGINT/SIGTERM -> :meth:`requested` is true; second -> KeyboardInterrupt."""

    def __init__(self) -> None:
        self.signame: str | None = None
        self._old: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signame is not None:
            raise KeyboardInterrupt(f"second {signal.Signals(signum).name}: stopping at once")
        self.signame = signal.Signals(signum).name
        import sys
        print(f"\n{self.signame}: finishing the current step, then writing a checkpoint "
              "(send it again to stop at once)", file=sys.stderr, flush=True)

    def __enter__(self) -> "GracefulStop":
        if threading.current_thread() is threading.main_thread():  # handlers can only be set there
            for s in SIGNALS:
                self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for s, old in self._old.items():
            signal.signal(s, old)
        self._old.clear()

    def requested(self, accelerator: Any) -> bool:
        """Whether to stop after this step (all ranks agree)."""
        if accelerator.num_processes == 1:
            return self.signame is not None
        import torch

        flag = torch.tensor(float(self.signame is not None), device=accelerator.device)
        stop = accelerator.reduce(flag, "sum").item() > 0
        if stop and self.signame is None:
            self.signame = "a signal on another rank"
        return stop

    def interrupted(self, step: int, total_steps: int, checkpoint: Path | None) -> TrainingInterrupted:
        return TrainingInterrupted(self.signame or "signal", step, total_steps, checkpoint)
