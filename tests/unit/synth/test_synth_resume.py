"""kill -9 in the middle of a run, restart: nothing answered is sent again, and the output equals an
uninterrupted run's. The teacher is the scripted fake, loaded in a subprocess via ``py:fake_teacher:make``."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from helpers import write_seeds

HERE = Path(__file__).parent


def _cmd(out, seeds):
    return [sys.executable, "-m", "instructkit", "synth", "self-instruct", "--out", str(out), "--seeds", str(seeds),
            "-n", "40", "--teacher", "py:fake_teacher:make", "requests_per_round=3", "teacher.batch_size=1",
            "teacher.progress=false"]


def _env(log, delay):
    return {**os.environ, "PYTHONPATH": f"{HERE}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
            "FAKE_TEACHER_LOG": str(log), "FAKE_TEACHER_DELAY": str(delay)}


def _cached_keys(path):
    import json
    keys = set()
    for line in path.read_text().splitlines():
        try:
            keys.add(json.loads(line)["k"])
        except ValueError:
            pass
    return keys


def test_kill_9_then_resume_resends_nothing_and_matches_uninterrupted(tmp_path):
    seeds = write_seeds(tmp_path / "seeds.jsonl")
    ref = subprocess.run(_cmd(tmp_path / "ref", seeds), env=_env(tmp_path / "ref.log", 0), capture_output=True,
                         text=True, timeout=120)
    assert ref.returncode == 0, ref.stderr
    total = len((tmp_path / "ref.log").read_text().split())
    assert total >= 6

    out = tmp_path / "run"
    p = subprocess.Popen(_cmd(out, seeds), env=_env(tmp_path / "first.log", 0.4), stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    cache = out / "cache.jsonl"
    deadline = time.time() + 90
    while time.time() < deadline and (not cache.exists() or len(cache.read_text().splitlines()) < 3):
        time.sleep(0.05)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    answered = _cached_keys(cache)
    assert 3 <= len(answered) < total, "the run was not killed mid-way"

    again = subprocess.run(_cmd(out, seeds), env=_env(tmp_path / "second.log", 0), capture_output=True, text=True,
                           timeout=120)
    assert again.returncode == 0, again.stderr
    resent = set((tmp_path / "second.log").read_text().split())
    assert resent and not (resent & answered)  # zero re-sent requests that had been answered
    assert len(answered) + len(resent) == total
    for name in ("data.messages.jsonl", "data.alpaca.json"):
        assert (out / name).read_text() == (tmp_path / "ref" / name).read_text()
