"""One HTTP request's trip through the engine: submit, then collect (JSON) or stream (SSE).

The engine thread calls each request's sink; the sink hops onto the event loop with
``call_soon_threadsafe`` into one asyncio queue per HTTP request (all prompts x ``n`` choices).
Whatever ends the HTTP exchange early — the client disconnecting (streamed or not: a non-streamed
request polls for the disconnect while it waits), a cancelled handler — cancels the engine requests in
``finally``, so their batch slots are freed at the next decode step.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any, AsyncIterator, Awaitable, TypeVar

from fastapi.responses import StreamingResponse

from instructkit.lm.engine import Completion, Event, QueueFull
from instructkit.serve.protocol import APIError
from instructkit.serve.responses import SSE_DONE, Shape, sse, usage

#: how often an idle stream checks whether its client is still there
_POLL_S = 0.5

T = TypeVar("T")


def client_gone() -> APIError:
    # nobody reads this answer; 499 (nginx's "client closed request") keeps it out of the 5xx counts
    return APIError(499, "the client closed the connection before the response was ready", code="client_closed")


async def unless_disconnected(request: Any, work: Awaitable[T], abandon: threading.Event | None = None) -> T:
    """Await ``work``, checking every ``_POLL_S`` whether the client went away; if it did, set ``abandon``
    (blocking work in a thread watches it), cancel ``work`` and raise :func:`client_gone`."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=_POLL_S)
            if done:
                return task.result()
            if await request.is_disconnected():
                raise client_gone()
    finally:
        if not task.done():
            if abandon is not None:
                abandon.set()
            task.cancel()


class Run:
    def __init__(self, engine: Any, shape: Shape, request: Any, prompts: list[list[int]], params: Any):
        self.engine, self.shape, self.request, self.prompts, self.params = engine, shape, request, prompts, params
        self.n = params.n
        self.total = len(prompts) * params.n
        self.queue: asyncio.Queue = asyncio.Queue()
        self.reqs: list[Any] = []
        self._checked = asyncio.get_running_loop().time()
        self._submit()

    def _submit(self) -> None:
        loop = asyncio.get_running_loop()
        if self.params.max_tokens == 0:  # nothing to generate (e.g. echo scoring): finish at once
            for i in range(self.total):
                self.queue.put_nowait((i, Event(i % self.n, finish_reason="length")))
            return
        try:
            for k, ids in enumerate(self.prompts):
                def sink(ev: Event, base: int = k * self.n) -> None:
                    try:
                        loop.call_soon_threadsafe(self.queue.put_nowait, (base + ev.index, ev))
                    except RuntimeError:  # the event loop is gone (server shutting down)
                        pass
                self.reqs.append(self.engine.submit(ids, self.params, sink))
        except QueueFull as e:
            self.cancel()
            raise APIError(429, f"The server is busy ({e}); retry shortly.", code="rate_limit_exceeded",
                           headers={"Retry-After": "1"}) from None
        except ValueError as e:
            self.cancel()
            raise APIError(400, str(e), param="prompt" if str(e).startswith("prompt") else None,
                           code="invalid_value") from None

    def cancel(self) -> None:
        for r in self.reqs:
            if not r.done.is_set():
                r.cancel()

    async def collect(self) -> list[Completion]:
        outs: list[Completion | None] = [None] * self.total
        try:
            for _ in range(self.total):
                i, ev = await self._next()
                while ev.finish_reason is None:
                    i, ev = await self._next()
                if ev.error:
                    raise APIError(500, f"generation failed: {ev.error}", code="engine_error")
                outs[i] = self._completion(i, ev)
        finally:
            self.cancel()
        return [o for o in outs if o is not None]

    async def _next(self) -> tuple[int, Event]:
        """The next event; raises :func:`client_gone` once the client disconnected (checked every
        ``_POLL_S`` while events flow, and while none comes)."""
        now = asyncio.get_running_loop().time()
        if now - self._checked >= _POLL_S:
            self._checked = now
            if await self.request.is_disconnected():
                raise client_gone()
        return await unless_disconnected(self.request, self.queue.get())

    def _completion(self, i: int, ev: Event) -> Completion:
        if not self.reqs:
            return Completion("", [], ev.finish_reason or "length", [] if self.params.logprobs else None)
        return self.reqs[i // self.n].outputs[i % self.n]

    def stream(self, include_usage: bool) -> StreamingResponse:
        return StreamingResponse(self._events(include_usage), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    async def _events(self, include_usage: bool) -> AsyncIterator[str]:
        shape, lp = self.shape, self.params.logprobs
        logprobs = shape.chat_logprobs if shape.kind == "chat" else shape.completion_logprobs
        n_tokens = 0
        try:
            if shape.kind == "chat":
                for i in range(self.total):
                    yield sse(shape.chunk(i, role=True, include_usage=include_usage))
            finished = 0
            while finished < self.total:
                try:
                    i, ev = await asyncio.wait_for(self.queue.get(), _POLL_S)
                except asyncio.TimeoutError:
                    if await self.request.is_disconnected():
                        return
                    continue
                if ev.error:
                    yield sse(APIError(500, f"generation failed: {ev.error}", code="engine_error").body(), "error")
                    return
                n_tokens += len(ev.token_ids)
                if ev.text or (lp and ev.token_ids):
                    yield sse(shape.chunk(i, text=ev.text, logprobs=logprobs(ev.logprobs) if lp else None,
                                          include_usage=include_usage))
                if ev.finish_reason:
                    finished += 1
                    yield sse(shape.chunk(i, finish=ev.finish_reason, include_usage=include_usage))
            if include_usage:
                yield sse(shape.usage_chunk(usage(sum(len(p) for p in self.prompts), n_tokens)))
            yield SSE_DONE
        finally:
            self.cancel()
