"""Run the app with uvicorn: in the foreground (``instructkit serve``) or in a thread (tests, benchmarks).

The HTTP port opens first and the model loads in a background thread, so clients see ``503`` (with
``Retry-After``) rather than connection refused while weights load.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Any, Callable, Optional

from instructkit.serve.adapters import ServedModels
from instructkit.serve.app import ServerState, build_app

log = logging.getLogger("instructkit.serve")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def load_in_background(state: ServerState, load: Callable[[], tuple[Any, Any, Any]]) -> threading.Thread:
    def run() -> None:
        try:
            state.ready(*load())
            # the startup heap (model, tokenizer, libraries) never becomes garbage: keep it out of the
            # collector, whose full passes over it would pause every request ~0.5 s
            import gc
            gc.collect()
            gc.freeze()
            log.info("model ready")
        except Exception as e:  # reported by /health and every route (500), not a dead server
            state.load_error = f"{type(e).__name__}: {e}"
            log.error("model failed to load: %s", state.load_error)
    t = threading.Thread(target=run, name="instructkit-load", daemon=True)
    t.start()
    return t


class ThreadedServer:
    """uvicorn in a daemon thread; ``url`` once started; ``close()`` stops it and the engine."""

    def __init__(self, state: ServerState, host: str = "127.0.0.1", port: Optional[int] = None, app: Any = None):
        import uvicorn

        self.state, self.host, self.port = state, host, port or free_port(host)
        cfg = uvicorn.Config(app if app is not None else build_app(state), host=host, port=self.port, log_level="warning",
                             timeout_graceful_shutdown=1)
        self.server = uvicorn.Server(cfg)
        self.thread = threading.Thread(target=self.server.run, name="instructkit-uvicorn", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def start(self, timeout: float = 30.0) -> "ThreadedServer":
        self.thread.start()
        t0 = time.time()
        while not self.server.started:
            if time.time() - t0 > timeout or not self.thread.is_alive():
                raise RuntimeError(f"server on {self.host}:{self.port} did not start")
            time.sleep(0.02)
        return self

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        if self.state.engine is not None:
            self.state.engine.stop()


def serve_engine(engine: Any, tokenizer: Any, served: ServedModels, *, chat_template: Optional[str] = None,
                 api_key: Optional[str] = None, host: str = "127.0.0.1", port: Optional[int] = None,
                 default_max_tokens: int = 1024, server_tools: Any = None) -> ThreadedServer:
    """Serve an already built engine from a thread (tests, benchmarks, ``instructkit chat`` locally).
    ``server_tools``: a :class:`instructkit.serve.tools.ServerTools` the server runs itself."""
    from instructkit.chat.render import Renderer

    state = ServerState(served, api_key=api_key, default_max_tokens=default_max_tokens)
    state.server_tools = server_tools
    state.ready(engine, tokenizer, Renderer(tokenizer, chat_template))
    return ThreadedServer(state, host, port).start()
