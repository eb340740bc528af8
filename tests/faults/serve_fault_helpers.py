"""Shared pieces of the serve fault tests (tests/faults/test_serve_*.py): servers, a scripted engine."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

from instructkit.lm.engine import Completion, Event

KEY = "fault-key"


def start_server(engine, tokenizer, **kw):
    from instructkit.serve.adapters import ServedModels
    from instructkit.serve.server import serve_engine
    return serve_engine(engine, tokenizer, ServedModels("tiny", kw.pop("adapters", {})), api_key=KEY, **kw)


def headers():
    return {"Authorization": f"Bearer {KEY}"}


def root(server) -> str:
    return server.url[: -len("/v1")]


def wait_idle(server, timeout: float = 10.0) -> dict:
    """Poll /health until nothing runs, waits or is admitted; the last status."""
    import httpx
    t0, st = time.time(), {}
    while time.time() - t0 < timeout:
        st = httpx.get(f"{root(server)}/health", timeout=5).json()
        if st.get("running") == st.get("waiting") == st.get("admitting") == 0:
            return st
        time.sleep(0.05)
    return st


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        import os
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class ScriptedEngine:
    """Engine stand-in: answers with scripted (text, finish_reason) pairs."""

    max_context = 4096

    def __init__(self, tokenizer, replies):
        self.tok, self.replies, self.prompts = tokenizer, list(replies), []
        self.vocab_size = len(tokenizer)

    def start(self):
        return self

    def stop(self):
        pass

    def status(self):
        return {"running": 0, "admitting": 0, "waiting": 0}

    def submit(self, ids, params, sink=None):
        self.prompts.append(self.tok.decode(ids))
        text, finish = self.replies.pop(0)
        req = SimpleNamespace(outputs=[Completion(text, self.tok.encode(text, add_special_tokens=False), finish)],
                              done=threading.Event(), cancel=lambda: None)
        req.done.set()
        if sink is not None:
            sink(Event(0, text=text, finish_reason=finish))
        return req
