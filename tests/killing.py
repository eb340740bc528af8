"""``kill -9`` a training run as soon as its first checkpoint exists (the kill/resume tests share this)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path


def sigkill_at_first_checkpoint(proc: subprocess.Popen, run_dir: Path, timeout: float) -> list[int]:
    """Wait for ``run_dir/checkpoint-*``, SIGKILL ``proc``, return the steps of the checkpoints left."""
    deadline = time.time() + timeout
    while not list(run_dir.glob("checkpoint-*")):
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else proc.returncode
        assert time.time() < deadline, f"no checkpoint in {run_dir} after {timeout} s"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    return [int(p.name.split("-")[1]) for p in run_dir.glob("checkpoint-*")]
