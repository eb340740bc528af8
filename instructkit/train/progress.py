"""What a training run will do, said before its first step, and when it will end, said after its first
micro-batch: a step can take minutes on a CPU under load, and a silent terminal looks like a hang."""

from __future__ import annotations

import logging
import time
from typing import Any, Sequence

log = logging.getLogger("instructkit.train")


def _duration(s: float) -> str:
    s = max(0, int(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


def announce_plan(rows: Sequence[dict[str, Any]], *, total_steps: int, steps_per_epoch: int, start_step: int,
                  micro_batch_size: int, grad_accum: int, world: int, enabled: bool) -> None:
    """One line, at once: optimizer steps, epochs, rows and real tokens this run will train on."""
    if not enabled:
        return
    tokens = sum(int(r["num_tokens"]) if "num_tokens" in r else len(r["input_ids"]) for r in rows)
    epochs = total_steps / max(steps_per_epoch, 1)
    left = f", resuming at step {start_step}" if start_step else ""
    log.info("plan: %d optimizer steps (%.2f epochs of %d steps; %d rows, %d tokens per epoch, ~%d tokens in all); "
             "%d rows per step (micro-batch %d x grad-accum %d x %d processes)%s", total_steps, epochs,
             steps_per_epoch, len(rows), tokens, round(tokens * epochs), micro_batch_size * grad_accum * world,
             micro_batch_size, grad_accum, world, left)


class FirstMicroBatch:
    """Times the session's first micro-batch (forward + backward) and logs an ETA for the remaining steps."""

    def __init__(self, *, grad_accum: int, steps_left: int, enabled: bool) -> None:
        self.grad_accum, self.steps_left, self.enabled = grad_accum, steps_left, enabled
        self.t0 = time.perf_counter()
        self.done = not enabled

    def tick(self) -> None:
        if self.done:
            return
        self.done = True
        took = time.perf_counter() - self.t0
        log.info("first micro-batch took %.1f s: about %s for the %d steps left (%d micro-batches each; first "
                 "batches are slower, the progress bar refines it)", took,
                 _duration(took * self.grad_accum * self.steps_left), self.steps_left, self.grad_accum)
