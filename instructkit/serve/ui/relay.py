"""The UI's way to the models: the OpenAI routes, streamed (SSE), through one shared httpx client.

The arena talks to ``/v1/chat/completions`` like any client — its own routes over loopback when it
serves a local model, another server's with ``--url`` — so both modes run the same code, the API's
validation, batching and limits apply to the UI unchanged, and the page never holds the API key or
learns a battle's model names. Leaving a stream early (the browser went away, the other side of a battle
failed) closes the upstream response, which cancels the generation there.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any, AsyncIterator, Optional

import httpx

#: server paths in an upstream error message (e.g. "model failed to load: ... /home/x/model") are masked
_PATH = re.compile(r"(?<![\w.])(?:/[\w.@+-]+){2,}/?|[A-Za-z]:\\[^\s'\"]+")


class UpstreamError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, _PATH.sub("<path>", message)


class Upstream:
    """An OpenAI-compatible endpoint (``base_url`` ends in ``/v1``)."""

    def __init__(self, base_url: str, api_key: Optional[str] = None, timeout_s: float = 600.0):
        self.base_url = base_url.rstrip("/")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client: Optional[httpx.AsyncClient] = None
        self._headers, self._timeout = headers, httpx.Timeout(timeout_s, connect=10.0)

    @property
    def client(self) -> httpx.AsyncClient:
        if self._client is None:  # created on the serving loop, on first use
            self._client = httpx.AsyncClient(headers=self._headers, timeout=self._timeout,
                                             limits=httpx.Limits(max_connections=256, max_keepalive_connections=32))
        return self._client

    async def models(self) -> list[str]:
        r = await self.client.get(self.base_url + "/models")
        if r.status_code != 200:
            raise UpstreamError(r.status_code, _message(r.text, r.status_code))
        return [m["id"] for m in r.json().get("data", [])]

    async def stream(self, model: str, messages: list[dict[str, str]], params: dict[str, Any]
                     ) -> AsyncIterator[dict[str, Any]]:
        """``{"text": ...}`` per content delta, then ``{"finish": reason}``; UpstreamError on failure."""
        body = {"model": model, "messages": messages, "stream": True, **params}
        async with self.client.stream("POST", self.base_url + "/chat/completions", json=body) as r:
            if r.status_code != 200:
                raise UpstreamError(r.status_code, _message((await r.aread()).decode("utf-8", "replace"),
                                                            r.status_code))
            event = "message"
            async for line in r.aiter_lines():
                if line.startswith("event:"):
                    event = line[6:].strip()
                    continue
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    return
                chunk = json.loads(data)
                if event == "error" or "error" in chunk:
                    raise UpstreamError(500, _message(data, 500))
                for ch in chunk.get("choices") or []:
                    text = (ch.get("delta") or {}).get("content")
                    if text:
                        yield {"text": text}
                    if ch.get("finish_reason"):
                        yield {"finish": ch["finish_reason"]}

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()


def _message(text: str, status: int) -> str:
    try:
        err = json.loads(text)["error"]
        return str(err.get("message") or err)
    except (ValueError, KeyError, TypeError, AttributeError):
        return f"the model server answered {status}"


async def merged(streams: list[AsyncIterator[dict[str, Any]]]) -> AsyncIterator[tuple[int, dict[str, Any]]]:
    """Events of several streams as they come, tagged with the stream's index; a failure is an
    ``{"error": message, "status": s}`` event of that stream. Leaving early cancels every stream."""
    queue: asyncio.Queue = asyncio.Queue()

    async def pump(i: int, s: AsyncIterator[dict[str, Any]]) -> None:
        try:
            async for ev in s:
                await queue.put((i, ev))
        except UpstreamError as e:
            await queue.put((i, {"error": e.message, "status": e.status}))
        except (httpx.HTTPError, ValueError) as e:
            await queue.put((i, {"error": f"the model server failed: {type(e).__name__}", "status": 502}))
        finally:
            await queue.put((i, None))

    tasks = [asyncio.ensure_future(pump(i, s)) for i, s in enumerate(streams)]
    try:
        live = len(tasks)
        while live:
            i, ev = await queue.get()
            if ev is None:
                live -= 1
            else:
                yield i, ev
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
