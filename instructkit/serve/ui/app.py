"""The arena: the OpenAI API and the web UI in one ASGI app (``instructkit arena``).

``/v1/...`` and ``/health``: the API app of ``serve`` unchanged (its key guard, its engine) — or, with
``--url``, no local model: only ``/health``, and the UI talks to the remote server. ``/`` and ``/ui/...``:
the UI (pages + ``/ui/api``) behind :class:`~instructkit.serve.ui.auth.FrontDoor`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Optional, Sequence

from fastapi import FastAPI

from instructkit.serve.app import api_error_handlers
from instructkit.serve.ui.auth import FrontDoor, Sessions
from instructkit.serve.ui.battles import Battles
from instructkit.serve.ui.board import Board
from instructkit.serve.ui.relay import Upstream
from instructkit.serve.ui.votes import VoteLog

log = logging.getLogger("instructkit.serve.arena")


@dataclass
class Limits:
    """What one visitor can ask for (the API's own limits, e.g. ``--max-queue``, apply on top)."""

    max_turns: int = 8          # user turns per battle / playground chat
    max_tokens: int = 512       # per reply
    max_prompt_chars: int = 8000
    max_battles: int = 64       # live battles in all
    per_session: int = 4        # live battles per browser session


class ArenaState:
    def __init__(self, upstream: Upstream, votes: VoteLog, sessions: Sessions, *, limits: Optional[Limits] = None,
                 models: Optional[Sequence[str]] = None, judge_battles: Optional[Sequence[dict]] = None,
                 bootstrap: int = 1000, permutations: int = 100, seed: int = 0):
        self.upstream, self.votes, self.sessions = upstream, votes, sessions
        self.limits = limits or Limits()
        self.battles = Battles(max_battles=self.limits.max_battles, per_session=self.limits.per_session,
                               max_turns=self.limits.max_turns)
        self.board = Board(votes, judge_battles, rounds=bootstrap, n_perm=permutations, seed=seed)
        self._models = list(models) if models else None

    async def model_names(self) -> list[str]:
        if self._models is None:  # --url without --models: ask the server once it answers
            self._models = await self.upstream.models()
        return self._models


def health_only_app() -> Any:
    """The API side with ``--url``: the models are served elsewhere."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def build_arena(api: Any, st: ArenaState) -> Any:
    """``api``: the ASGI app answering everything outside ``/ui`` (``serve``'s guarded app)."""
    from instructkit.serve.ui import api as ui_api
    from instructkit.serve.ui import pages

    ui = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    api_error_handlers(ui)
    ui.include_router(pages.router(st))
    ui.include_router(ui_api.router(st))
    return FrontDoor(api, ui, st.sessions)
