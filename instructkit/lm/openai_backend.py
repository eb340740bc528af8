"""An OpenAI-compatible HTTP endpoint (vLLM, llama.cpp server, TGI, OpenAI) behind the LM interface.

* chat messages -> ``/v1/chat/completions``; plain prompts -> ``/v1/completions``;
* loglikelihood -> ``/v1/completions`` with ``echo=True, logprobs=1, max_tokens=0``: the prompt is
  context + continuation and the continuation's tokens are those whose ``text_offset`` is at or after
  the context's length. A server that does not echo prompt log-probs gets a clear error.

The API key is read from an environment variable at construction, sent only as a header, and never
appears in ``repr``, logs or error messages. Transient failures (connection errors, 429, 5xx) are retried
with exponential backoff; an unreachable endpoint ends in an error naming the URL.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

from instructkit.errors import InstructkitError
from instructkit.lm.api import GenerateRequest, GenerateResult, LoglikelihoodRequest, LoglikelihoodResult
from instructkit.lm.hf import cut_at_stop

_RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


class EndpointError(InstructkitError):
    """The endpoint failed or cannot do what was asked."""


class OpenAIModel:
    def __init__(self, base_url: str, model: str, api_key_env: str = "OPENAI_API_KEY", *, timeout: float = 60.0,
                 max_retries: int = 3, backoff: float = 0.5, concurrency: int = 4):
        self.base_url = base_url.rstrip("/")
        if not self.base_url.endswith("/v1"):
            self.base_url += "/v1"
        self.model = model
        self.name = f"{model}@{self.base_url}"
        self.api_key_env = api_key_env
        self.__key = os.environ.get(api_key_env)  # name-mangled, and never formatted into any string
        self.timeout, self.max_retries, self.backoff = timeout, max_retries, backoff
        self.concurrency = max(1, concurrency)
        self.batch_size = concurrency
        self.dtype = None
        self.fingerprint = f"openai:{self.base_url}:{model}"
        self.stats: dict[str, float] = {}

    def __repr__(self) -> str:
        return f"OpenAIModel(base_url={self.base_url!r}, model={self.model!r}, api_key_env={self.api_key_env!r})"

    # -- HTTP -----------------------------------------------------------------------------------------
    def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        import httpx

        url = f"{self.base_url}{path}"
        headers = {"Content-Type": "application/json"}
        if self.__key:
            headers["Authorization"] = f"Bearer {self.__key}"
        last = ""
        for attempt in range(self.max_retries + 1):
            try:
                r = httpx.post(url, json=payload, headers=headers, timeout=self.timeout)
            except httpx.HTTPError as e:
                # str(e) of httpx transport errors holds no headers; the key cannot leak through it
                last = f"cannot reach {url} ({type(e).__name__}: {e})"
            else:
                if r.status_code < 400:
                    try:
                        return r.json()
                    except ValueError as e:
                        raise EndpointError(f"{url} returned non-JSON ({r.text[:200]!r})") from e
                body = r.text[:300]
                last = f"{url} returned HTTP {r.status_code}: {body}"
                if r.status_code not in _RETRY_STATUS:
                    raise EndpointError(last)
            if attempt < self.max_retries:
                time.sleep(self.backoff * 2 ** attempt)
        raise EndpointError(f"OpenAI-compatible endpoint failed after {self.max_retries + 1} attempts: {last}")

    def _map(self, fn: Any, items: Sequence[Any]) -> list[Any]:
        if self.concurrency == 1 or len(items) < 2:
            return [fn(x) for x in items]
        with ThreadPoolExecutor(self.concurrency) as ex:
            return list(ex.map(fn, items))

    # -- loglikelihood ----------------------------------------------------------------------------------
    def _one_ll(self, r: LoglikelihoodRequest) -> LoglikelihoodResult:
        data = self._post("/completions", dict(model=self.model, prompt=r.context + r.continuation, max_tokens=0,
                                               echo=True, logprobs=1, temperature=0.0))
        try:
            lp = data["choices"][0]["logprobs"]
            tokens, token_lps, offsets = lp["tokens"], lp["token_logprobs"], lp["text_offset"]
            tops = lp.get("top_logprobs") or [None] * len(tokens)
        except (KeyError, IndexError, TypeError) as e:
            raise EndpointError(f"{self.base_url}/completions did not return prompt log-probs (echo=True, "
                                "logprobs): this server cannot score log-likelihoods; use generation tasks "
                                "or a local model") from e
        start = len(r.context)
        idx = [i for i, o in enumerate(offsets) if o >= start and i < len(tokens)]
        if not idx or any(token_lps[i] is None for i in idx):
            raise EndpointError(f"{self.base_url}/completions: no log-probs for the continuation tokens")
        greedy = all(tops[i] is None or max(tops[i].values()) <= token_lps[i] + 1e-6 for i in idx)
        return LoglikelihoodResult(float(sum(token_lps[i] for i in idx)), bool(greedy), len(idx), len(r.continuation))

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[LoglikelihoodResult]:
        return self._map(self._one_ll, requests)

    # -- generation -------------------------------------------------------------------------------------
    def _one_gen(self, r: GenerateRequest) -> GenerateResult:
        common: dict[str, Any] = dict(model=self.model, max_tokens=r.max_new_tokens, temperature=r.temperature,
                                      top_p=r.top_p, n=r.n)
        if r.stop:
            common["stop"] = list(r.stop)[:4]  # the OpenAI API takes at most 4; the rest are cut client-side
        if r.seed is not None:
            common["seed"] = r.seed
        if r.messages is not None:
            data = self._post("/chat/completions", dict(messages=r.messages, **common))
            texts = [(c.get("message") or {}).get("content") or "" for c in data.get("choices", [])]
        else:
            data = self._post("/completions", dict(prompt=r.prompt or "", **common))
            texts = [c.get("text") or "" for c in data.get("choices", [])]
        if not texts:
            raise EndpointError(f"{self.base_url}: response has no choices")
        used = (data.get("usage") or {}).get("completion_tokens") or 0
        return GenerateResult([cut_at_stop(t, r.stop) for t in texts], [used // len(texts)] * len(texts))

    def generate(self, requests: Sequence[GenerateRequest]) -> list[GenerateResult]:
        return self._map(self._one_gen, requests)
