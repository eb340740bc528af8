"""Tool calls in killable worker processes, with a CPU-time limit.

A tool the model calls is hostile input: ``round(1, -10**8)`` makes CPython build a 10**8-digit integer in
C while holding the GIL, which no thread timeout can interrupt - in the server's process it would freeze
every request. So every tool loaded by spec (built-ins and ``module:function`` plug-ins) runs in a small
pool of worker processes (``python -m instructkit.toolset.worker``): the kernel stops a call that exceeds
its CPU-time limit (SIGXCPU), the caller stops one that exceeds its wall-clock timeout (SIGKILL), and a
dead worker is replaced. The caller's thread only waits on a pipe, so the GIL stays free meanwhile.
"""

from __future__ import annotations

import atexit
import json
import os
import select
import subprocess
import sys
import threading
import weakref
from typing import Any


class _Worker:
    def __init__(self) -> None:
        env = dict(os.environ)
        # the worker imports what this process can import (plug-ins found through sys.path included)
        env["PYTHONPATH"] = os.pathsep.join(p for p in [*sys.path, env.get("PYTHONPATH", "")] if p)
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        self.proc = subprocess.Popen([sys.executable, "-m", "instructkit.toolset.worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
                                     text=True, bufsize=1, start_new_session=True)

    def call(self, req: dict[str, Any], timeout_s: float) -> tuple[bool, str] | None:
        """``(ok, content)``, or None when the worker died or timed out (it is then killed)."""
        try:
            self.proc.stdin.write(json.dumps(req) + "\n")  # type: ignore[union-attr]
            self.proc.stdin.flush()  # type: ignore[union-attr]
            ready, _, _ = select.select([self.proc.stdout], [], [], timeout_s)
            line = self.proc.stdout.readline() if ready else ""  # type: ignore[union-attr]
        except (OSError, ValueError):
            line = ""
        if not line:
            self.kill()
            return None
        reply = json.loads(line)
        return bool(reply["ok"]), str(reply["content"])

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()  # type: ignore[union-attr]
            except OSError:
                pass


class Sandbox:
    """Up to ``workers`` processes, started on first use; ``call`` is thread-safe."""

    def __init__(self, workers: int = 2):
        self.size = workers
        self._idle: list[_Worker] = []
        self._all: list[_Worker] = []
        self._slots = threading.BoundedSemaphore(workers)
        self._lock = threading.Lock()
        weakref.finalize(self, Sandbox._close_all, self._all)

    def call(self, spec: str, options: dict[str, Any], args: dict[str, Any], *, cpu_s: float,
             timeout_s: float) -> tuple[bool, str]:
        # sys.path travels with each call: a plug-in importable here now is importable there (a worker
        # started earlier may predate the path entry)
        req = {"spec": spec, "options": options, "args": args, "cpu_s": cpu_s, "path": list(sys.path)}
        with self._slots:
            with self._lock:
                w = self._idle.pop() if self._idle else None
            if w is None:
                w = _Worker()
                with self._lock:
                    self._all.append(w)
            out = w.call(req, timeout_s)
            with self._lock:
                if out is None:
                    self._all.remove(w)
                else:
                    self._idle.append(w)
        if out is None:
            code = w.proc.returncode
            why = (f"exceeded its CPU-time limit ({cpu_s:g}s)" if code in (-24, 152) else  # SIGXCPU
                   f"timed out after {timeout_s:g}s" if code == -9 else f"crashed (exit code {code})")
            return False, f"error: the tool {why} and was stopped"
        return out

    def close(self) -> None:
        Sandbox._close_all(self._all)

    @staticmethod
    def _close_all(workers: list[_Worker]) -> None:
        for w in list(workers):
            w.kill()
        workers.clear()


_shared: Sandbox | None = None
_shared_lock = threading.Lock()


def shared_sandbox() -> Sandbox:
    """The process-wide pool (one per process: every toolset shares it)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = Sandbox(workers=max(2, min(4, os.cpu_count() or 2)))
            atexit.register(_shared.close)
        return _shared
