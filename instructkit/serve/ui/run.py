"""Assemble the arena around a local model (API + UI in one process) or around a remote ``--url``."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

from instructkit.serve.adapters import ServedModels
from instructkit.serve.app import ServerState, build_app
from instructkit.serve.server import ThreadedServer, free_port
from instructkit.serve.ui.app import ArenaState, Limits, build_arena, health_only_app
from instructkit.serve.ui.auth import Sessions
from instructkit.serve.ui.relay import Upstream
from instructkit.serve.ui.votes import VoteLog


def loopback(host: str, port: int) -> str:
    """The URL the arena uses to reach its own OpenAI routes."""
    h = "127.0.0.1" if host in ("0.0.0.0", "", "localhost") else ("[::1]" if host in ("::", "::1") else host)
    return f"http://{h}:{port}/v1"


def display_name(model: str) -> str:
    """The name the base model is served (and shown) under: a local folder's name, never its path."""
    p = Path(model)
    return p.name if p.exists() else model


def arena_state(upstream_url: str, upstream_key: Optional[str], votes: str | Path, api_key: Optional[str], *,
                models: Optional[Sequence[str]] = None, judge_battles: Sequence[str | Path] = (),
                limits: Optional[Limits] = None, **board_kw: Any) -> ArenaState:
    from instructkit.judging.ratings import load_battles

    judged = [b for f in judge_battles for b in load_battles(f)]
    return ArenaState(Upstream(upstream_url, upstream_key), VoteLog(votes), Sessions(api_key), limits=limits,
                      models=models, judge_battles=judged or None, **board_kw)


def local_arena(state: ServerState, host: str, port: int, votes: str | Path, *,
                models: Optional[Sequence[str]] = None, **kw: Any) -> tuple[Any, ArenaState]:
    """The API of ``state`` and the UI, the UI reaching the API over loopback with the server's own key;
    ``models``: the contestants (default: the base and every adapter)."""
    st = arena_state(loopback(host, port), state.api_key, votes, state.api_key,
                     models=models or [c["id"] for c in state.served.cards()], **kw)
    return build_arena(build_app(state), st), st


def remote_arena(url: str, url_key: Optional[str], votes: str | Path, api_key: Optional[str],
                 **kw: Any) -> tuple[Any, ArenaState]:
    st = arena_state(url, url_key, votes, api_key, **kw)
    return build_arena(health_only_app(), st), st


def serve_arena(engine: Any, tokenizer: Any, served: ServedModels, votes: str | Path, *,
                api_key: Optional[str] = None, chat_template: Optional[str] = None, host: str = "127.0.0.1",
                port: Optional[int] = None, **kw: Any) -> ThreadedServer:
    """An already built engine served with the UI from a thread (tests, notebooks); ``.arena`` is the state."""
    from instructkit.chat.render import Renderer

    state = ServerState(served, api_key=api_key)
    state.ready(engine, tokenizer, Renderer(tokenizer, chat_template))
    port = port or free_port(host)
    app, st = local_arena(state, host, port, votes, **kw)
    srv = ThreadedServer(state, host, port, app=app).start()
    srv.arena = st  # type: ignore[attr-defined]
    return srv


def serve_remote_arena(url: str, votes: str | Path, *, url_key: Optional[str] = None, api_key: Optional[str] = None,
                       host: str = "127.0.0.1", port: Optional[int] = None, **kw: Any) -> ThreadedServer:
    app, st = remote_arena(url, url_key, votes, api_key, **kw)
    srv = ThreadedServer(ServerState(ServedModels("remote")), host, port, app=app).start()
    srv.arena = st  # type: ignore[attr-defined]
    return srv
