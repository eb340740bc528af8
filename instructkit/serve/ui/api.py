"""The page's JSON/SSE routes under ``/ui/api``: config, playground chat, battles, votes, leaderboard.

Streams are server-sent events of small JSON objects: ``{"side": i, "text": ...}`` per delta,
``{"side": i, "finish": reason}``, ``{"side": i, "error": message}``, and a last ``{"done": true, ...}``.
The playground has one side (0); a battle two, streamed at once. Every bound is checked here, before a
token is generated: turns, prompt length, ``max_tokens``, live battles (see ``Battles``).
"""

from __future__ import annotations

import json
from typing import Any, AsyncIterator, Literal

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from instructkit.serve.protocol import APIError
from instructkit.serve.ui.relay import UpstreamError, merged


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Params(_Strict):
    temperature: float = Field(0.7, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    max_tokens: int = Field(256, ge=1)


class Msg(_Strict):
    role: Literal["system", "user", "assistant"]
    content: str


class ChatBody(Params):
    model: str
    messages: list[Msg] = Field(min_length=1)


class TurnBody(Params):
    prompt: str = Field(min_length=1)


class VoteBody(_Strict):
    vote: str


def _sse(obj: dict[str, Any]) -> str:
    return f"data: {json.dumps(obj, ensure_ascii=False)}\n\n"


def _stream(gen: AsyncIterator[str]) -> StreamingResponse:
    return StreamingResponse(gen, media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def _session(request: Request) -> str:
    return request.scope["state"]["arena_session"]


def router(st: Any) -> APIRouter:
    """``st``: the :class:`~instructkit.serve.ui.app.ArenaState`."""
    r = APIRouter(prefix="/ui/api")
    lim = st.limits

    def params(p: Params) -> dict[str, Any]:
        if p.max_tokens > lim.max_tokens:
            raise APIError(400, f"max_tokens is at most {lim.max_tokens} here", param="max_tokens",
                           code="invalid_value")
        return {"temperature": p.temperature, "top_p": p.top_p, "max_tokens": p.max_tokens}

    def check_text(text: str, param: str) -> None:
        if len(text) > lim.max_prompt_chars:
            raise APIError(400, f"{param} is {len(text)} characters; at most {lim.max_prompt_chars}",
                           param=param, code="too_long")

    async def models() -> list[str]:
        try:
            return await st.model_names()
        except UpstreamError as e:
            raise APIError(502, f"the model server is not answering: {e.message}", code="upstream_error") from None

    @r.get("/config")
    async def config() -> dict[str, Any]:
        names = await models()
        return {"models": names, "battle": len(names) >= 2, "login": bool(st.sessions.api_key),
                "max_turns": lim.max_turns, "max_tokens": lim.max_tokens, "max_prompt_chars": lim.max_prompt_chars,
                "defaults": {**Params().model_dump(), "max_tokens": min(256, lim.max_tokens)}, "judge": st.board.judge is not None}

    @r.post("/chat")
    async def chat(body: ChatBody) -> StreamingResponse:
        if body.model not in await models():
            raise APIError(404, f"unknown model {body.model!r}", param="model", code="model_not_found")
        p = params(body)
        msgs = [m.model_dump() for m in body.messages]
        if msgs[-1]["role"] != "user":
            raise APIError(400, "the last message must be the user's", param="messages")
        if sum(m["role"] == "user" for m in msgs) > lim.max_turns:
            raise APIError(400, f"turn limit reached ({lim.max_turns}); clear the chat", code="turn_limit")
        for m in msgs:
            check_text(m["content"], "messages")

        async def events() -> AsyncIterator[str]:
            async for i, ev in merged([st.upstream.stream(body.model, msgs, p)]):
                yield _sse({"side": i, **ev})
            yield _sse({"done": True})
        return _stream(events())

    @r.post("/battles")
    async def new_battle(request: Request) -> dict[str, Any]:
        b = st.battles.new(_session(request), await models())
        return {"battle_id": b.id, "max_turns": st.battles.max_turns}

    @r.post("/battles/{bid}/turn")
    async def turn(bid: str, body: TurnBody, request: Request) -> StreamingResponse:
        b = st.battles.get(bid, _session(request))
        check_text(body.prompt, "prompt")
        p = params(body)
        st.battles.begin_turn(b)
        msgs = [conv + [{"role": "user", "content": body.prompt}] for conv in b.convs]

        async def events() -> AsyncIterator[str]:
            texts, ok = ["", ""], True
            try:
                async for i, ev in merged([st.upstream.stream(m, msgs[k], p) for k, m in enumerate(b.models)]):
                    texts[i] += ev.get("text", "")
                    ok = ok and "error" not in ev
                    yield _sse({"side": i, **{k: v for k, v in ev.items() if k != "status"}})
                st.battles.end_turn(b, body.prompt, texts if ok else None, p)
                yield _sse({"done": True, "ok": ok, "turn": b.turns, "max_turns": st.battles.max_turns})
            finally:
                if b.busy:  # the browser went away mid-turn: the turn leaves no trace
                    st.battles.end_turn(b, body.prompt, None, p)
        return _stream(events())

    @r.post("/battles/{bid}/vote")
    async def vote(bid: str, body: VoteBody, request: Request) -> dict[str, Any]:
        sid = _session(request)
        b = st.battles.get(bid, sid)
        st.battles.decide(b, body.vote)  # claims the one vote before any await
        rec = st.battles.record(b, st.sessions.tag(sid))
        try:
            await run_in_threadpool(st.votes.append, rec)
        except OSError:
            st.battles.undecide(b)
            raise APIError(500, "the vote could not be saved; please vote again", code="vote_not_saved") from None
        st.battles.close(b)
        return {"model_a": rec["model_a"], "model_b": rec["model_b"], "winner": rec["winner"],
                "votes": len(st.votes)}

    @r.get("/leaderboard")
    async def leaderboard() -> dict[str, Any]:
        return await run_in_threadpool(st.board.table)

    @r.get("/winrate.png")
    async def winrate() -> Response:
        png = await run_in_threadpool(st.board.win_matrix_png)
        if png is None:
            raise APIError(404, "no votes yet", code="no_votes")
        return Response(png, media_type="image/png", headers={"Cache-Control": "no-store"})

    return r
