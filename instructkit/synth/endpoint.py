"""An OpenAI-compatible endpoint as a synthesis teacher: N requests in flight, rate limits, retries.

The eval stage's ``OpenAIModel`` sends requests from a thread pool with plain backoff; a teacher that
sends tens of thousands of requests to a hosted API needs more: an asyncio/httpx client with a
concurrency limit, a token bucket on requests *and* tokens per minute, retry with exponential backoff
on 429/5xx with the server's ``Retry-After`` as the floor of each wait, a per-request timeout, and results handed
back one by one as they arrive (so the cache can persist each answer at once).

It implements the same narrow ``generate(requests)`` interface as every other model.
"""

from __future__ import annotations

import asyncio
import email.utils
import os
import time
from typing import Any, Callable, Sequence

from instructkit.errors import InstructkitError
from instructkit.lm.api import GenerateRequest, GenerateResult
from instructkit.lm.hf import cut_at_stop

_RETRY = {408, 409, 429, 500, 502, 503, 504}


class EndpointError(InstructkitError):
    """The endpoint cannot be reached or refuses the requests."""


class RequestFailed(Exception):
    """One request failed for good (after retries); the run counts it and goes on."""


class TokenBucket:
    """Requests-per-minute and tokens-per-minute limits (0 = unlimited), refilled continuously."""

    def __init__(self, rpm: float = 0, tpm: float = 0, clock: Callable[[], float] = time.monotonic):
        self.rpm, self.tpm, self.clock = rpm, tpm, clock
        self.req, self.tok = float(rpm or 1), float(tpm or 1)
        self.last = clock()

    def _refill(self) -> None:
        now = self.clock()
        dt, self.last = now - self.last, now
        if self.rpm:
            self.req = min(self.rpm, self.req + dt * self.rpm / 60)
        if self.tpm:
            self.tok = min(self.tpm, self.tok + dt * self.tpm / 60)

    def wait_time(self, tokens: int) -> float:
        """Seconds until one request of ``tokens`` may go (0: take it now)."""
        self._refill()
        waits = [0.0]
        if self.rpm and self.req < 1:
            waits.append((1 - self.req) * 60 / self.rpm)
        if self.tpm:
            need = min(tokens, self.tpm)  # a request larger than the bucket waits for a full bucket
            if self.tok < need:
                waits.append((need - self.tok) * 60 / self.tpm)
        w = max(waits)
        if w == 0:
            self.req -= 1 if self.rpm else 0
            self.tok -= min(tokens, self.tpm) if self.tpm else 0
        return w

    async def acquire(self, tokens: int) -> None:
        while (w := self.wait_time(tokens)) > 0:
            await asyncio.sleep(w)


def retry_after(headers: Any) -> float | None:
    """``Retry-After`` as seconds (a number or an HTTP date), ``None`` if absent or unreadable."""
    v = headers.get("retry-after") if headers is not None else None
    if not v:
        return None
    try:
        return max(0.0, float(v))
    except ValueError:
        try:
            return max(0.0, email.utils.parsedate_to_datetime(v).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


class AsyncEndpoint:
    def __init__(self, base_url: str, model: str, *, api_key_env: str = "OPENAI_API_KEY", concurrency: int = 8,
                 rpm: float = 0, tpm: float = 0, timeout: float = 60.0, max_retries: int = 6, backoff: float = 1.0,
                 max_backoff: float = 60.0, transport: Any = None):
        self.base_url = base_url.rstrip("/")
        if not self.base_url.endswith("/v1"):
            self.base_url += "/v1"
        self.model, self.name = model, f"{model}@{self.base_url}"
        self.fingerprint = f"openai:{self.base_url}:{model}"
        self.api_key_env = api_key_env
        self.__key = os.environ.get(api_key_env)  # never formatted into a message
        self.concurrency, self.timeout = max(1, concurrency), timeout
        self.max_retries, self.backoff, self.max_backoff = max_retries, backoff, max_backoff
        self.bucket = TokenBucket(rpm, tpm)
        self.transport = transport  # httpx.MockTransport in tests
        self.usage = {"prompt_tokens": 0, "completion_tokens": 0, "retries": 0, "failed": 0}

    def __repr__(self) -> str:
        return f"AsyncEndpoint(base_url={self.base_url!r}, model={self.model!r})"

    def _payload(self, r: GenerateRequest) -> tuple[str, dict[str, Any]]:
        body: dict[str, Any] = dict(model=self.model, max_tokens=r.max_new_tokens, temperature=r.temperature,
                                    top_p=r.top_p, n=r.n)
        if r.stop:
            body["stop"] = list(r.stop)[:4]  # the API takes at most 4; the rest are cut client-side
        if r.seed is not None:
            body["seed"] = r.seed
        if r.messages is not None:
            return "/chat/completions", dict(messages=r.messages, **body)
        return "/completions", dict(prompt=r.prompt or "", **body)

    async def _one(self, client: Any, r: GenerateRequest) -> GenerateResult:
        import httpx

        path, payload = self._payload(r)
        url = self.base_url + path
        est = len(str(payload.get("messages") or payload.get("prompt"))) // 4 + r.max_new_tokens * r.n
        last, reachable = "", False
        for attempt in range(self.max_retries + 1):
            await self.bucket.acquire(est)
            wait = min(self.max_backoff, self.backoff * 2 ** attempt)
            try:
                resp = await client.post(url, json=payload, timeout=self.timeout)
            except httpx.TimeoutException:
                last, reachable = f"timed out after {self.timeout:g}s", True
            except httpx.HTTPError as e:
                last = f"cannot reach {url} ({type(e).__name__})"
            else:
                reachable = True
                if resp.status_code < 400:
                    return self._parse(resp, r)
                last = f"HTTP {resp.status_code}: {resp.text[:200]}"
                if resp.status_code not in _RETRY:
                    if resp.status_code in (401, 403, 404):
                        raise EndpointError(f"{url} refused the request ({last})")
                    raise RequestFailed(last)
                ra = retry_after(resp.headers)
                if ra is not None:  # the floor of the backoff, not a replacement: a busy server that keeps
                    wait = max(wait, min(self.max_backoff, ra))  # saying "1 s" must not exhaust the retries in 4 s
            if attempt < self.max_retries:
                self.usage["retries"] += 1
                await asyncio.sleep(wait)
        if not reachable:
            raise EndpointError(f"OpenAI-compatible endpoint unreachable after {self.max_retries + 1} attempts: {last}")
        raise RequestFailed(f"failed after {self.max_retries + 1} attempts: {last}")

    def _parse(self, resp: Any, r: GenerateRequest) -> GenerateResult:
        try:
            data = resp.json()
            choices = data["choices"]
            texts = [((c.get("message") or {}).get("content") if r.messages is not None else c.get("text")) or ""
                     for c in choices]
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise RequestFailed(f"malformed response ({type(e).__name__}): {resp.text[:200]!r}") from None
        if not texts:
            raise RequestFailed("response has no choices")
        usage = data.get("usage") or {}
        self.usage["prompt_tokens"] += int(usage.get("prompt_tokens") or 0)
        done = int(usage.get("completion_tokens") or 0)
        self.usage["completion_tokens"] += done
        return GenerateResult([cut_at_stop(t, r.stop) for t in texts], [done // len(texts)] * len(texts))

    async def agenerate(self, requests: Sequence[GenerateRequest],
                        on_result: Callable[[int, GenerateResult | Exception], None]) -> None:
        """Send every request; ``on_result(i, result or RequestFailed)`` is called as each one finishes."""
        import httpx

        headers = {"Content-Type": "application/json"}
        if self.__key:
            headers["Authorization"] = f"Bearer {self.__key}"
        sem = asyncio.Semaphore(self.concurrency)
        kw = {"transport": self.transport} if self.transport is not None else {}
        async with httpx.AsyncClient(headers=headers, **kw) as client:
            async def run(i: int, r: GenerateRequest) -> None:
                async with sem:
                    try:
                        res: GenerateResult | Exception = await self._one(client, r)
                    except RequestFailed as e:
                        self.usage["failed"] += 1
                        res = e
                    on_result(i, res)

            tasks = [asyncio.ensure_future(run(i, r)) for i, r in enumerate(requests)]
            try:
                await asyncio.gather(*tasks)
            finally:
                for t in tasks:
                    t.cancel()

    def generate(self, requests: Sequence[GenerateRequest]) -> list[GenerateResult]:
        """The narrow LM interface; a request that fails for good raises :class:`EndpointError`."""
        out: list[Any] = [None] * len(requests)

        def put(i: int, res: Any) -> None:
            out[i] = res

        asyncio.run(self.agenerate(requests, put))
        for res in out:
            if isinstance(res, Exception):
                raise EndpointError(f"{self.base_url}: {res}")
        return out
