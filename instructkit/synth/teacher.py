"""The teacher: any model behind the eval stage's ``generate(requests)``, plus a crash-safe answer cache.

Every request is keyed by (model fingerprint, prompt/messages, sampling params, seed). Answers are
appended to ``cache.jsonl`` as they arrive, flushed and fsynced, so a run killed with ``kill -9`` and
started again re-sends nothing that was answered; a torn last line is ignored and recomputed.
Local models get whole chunks (batched generation); endpoints get all missing requests at once,
N in flight. Usage (requests, cache hits, failures, tokens, optional cost) is counted for the report.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

from instructkit.errors import InstructkitError
from instructkit.jsonl import read_log
from instructkit.lm.api import GenerateRequest, GenerateResult


def derive_seed(base: int, *parts: Any) -> int:
    """A request's own sampling seed from the run seed and what identifies the request (stage, round,
    item index/id). Hashed, so no two requests share a seed (``seed + i`` collides across neighbouring
    prompts and across runs with neighbouring seeds) and a rerun asks the same questions."""
    blob = json.dumps([base, *parts], ensure_ascii=False, default=str).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:4], "big") & 0x7FFFFFFF


def request_key(fingerprint: str, req: GenerateRequest) -> str:
    d = {k: v for k, v in asdict(req).items() if k != "key"}
    return hashlib.sha256(json.dumps([fingerprint, d], sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class AnswerCache:
    """Append-only JSONL of ``{"k": key, "texts": [...], "n_tokens": [...]}``, one line per answer."""

    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path else None
        self.store: dict[str, GenerateResult] = {}
        self.torn = 0
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        records, self.torn = read_log(self.path, ("k", "texts", "n_tokens"))  # torn: killed mid-write, asked again
        for rec in records:
            self.store[rec["k"]] = GenerateResult(list(rec["texts"]), list(rec["n_tokens"]))
        self._f = self.path.open("a", encoding="utf-8")

    def get(self, key: str) -> GenerateResult | None:
        return self.store.get(key)

    def put_many(self, items: list[tuple[str, GenerateResult]]) -> None:
        for k, r in items:
            self.store[k] = r
        if self.path is None or not items:
            return
        self._f.write("".join(json.dumps({"k": k, "texts": r.texts, "n_tokens": r.n_tokens}, ensure_ascii=False) + "\n"
                              for k, r in items))
        self._f.flush()
        os.fsync(self._f.fileno())


class Teacher:
    """``Teacher(lm, cache_path)``; ``generate(requests)`` returns a result or ``None`` (failed, counted)."""

    def __init__(self, lm: Any, cache_path: str | Path | None = None, *, batch_size: int | None = None,
                 progress: bool = True, price_in: float = 0.0, price_out: float = 0.0):
        self.lm = lm
        self.name = getattr(lm, "name", type(lm).__name__)
        fp = getattr(lm, "fingerprint", None)
        self.fingerprint = str(fp) if fp else self.name
        self.cache = AnswerCache(cache_path)
        self.batch_size = batch_size or getattr(lm, "batch_size", 8) or 8
        self.progress = progress
        self.price_in, self.price_out = price_in, price_out  # per million tokens
        self.usage = {"requests": 0, "sent": 0, "cache_hits": 0, "failed": 0, "completion_tokens": 0,
                      "prompt_tokens_est": 0, "seconds": 0.0}
        self.failures: list[str] = []

    # -- progress --------------------------------------------------------------------------------
    def _bar(self, total: int, desc: str) -> Any:
        from tqdm.auto import tqdm
        return tqdm(total=total, desc=desc, disable=not self.progress or total < 1, unit="req", leave=False)

    def _tick(self, bar: Any, n: int, t0: float, toks: int) -> None:
        bar.update(n)
        dt = max(1e-6, time.perf_counter() - t0)
        bar.set_postfix_str(f"{bar.n / dt:.2f} req/s, {toks / dt:.0f} tok/s", refresh=False)

    # -- generation -----------------------------------------------------------------------------
    def generate(self, requests: Sequence[GenerateRequest], desc: str = "teacher") -> list[GenerateResult | None]:
        keys = [request_key(self.fingerprint, r) for r in requests]
        out: list[GenerateResult | None] = [self.cache.get(k) for k in keys]
        self.usage["requests"] += len(requests)
        self.usage["cache_hits"] += sum(o is not None for o in out)
        todo = [i for i, o in enumerate(out) if o is None]
        if not todo:
            return out
        t0 = time.perf_counter()
        bar, state = self._bar(len(todo), desc), {"toks": 0}

        def done(batch: list[tuple[int, GenerateResult | Exception]]) -> None:
            ok = [(i, r) for i, r in batch if isinstance(r, GenerateResult)]
            for i, r in batch:
                if not isinstance(r, GenerateResult):
                    self.usage["failed"] += 1
                    self.failures.append(str(r)[:300])
            self.cache.put_many([(keys[i], r) for i, r in ok])
            for i, r in ok:
                out[i] = r
                state["toks"] += sum(r.n_tokens)
                self.usage["prompt_tokens_est"] += len(str(requests[i].messages or requests[i].prompt)) // 4
            self.usage["completion_tokens"] += sum(sum(r.n_tokens) for _, r in ok)
            self.usage["sent"] += len(batch)
            self._tick(bar, len(batch), t0, state["toks"])

        try:
            if hasattr(self.lm, "agenerate"):  # an endpoint: everything in flight, each answer saved on arrival
                asyncio.run(self.lm.agenerate([requests[i] for i in todo], lambda j, r: done([(todo[j], r)])))
            else:
                for b0 in range(0, len(todo), self.batch_size):
                    chunk = todo[b0: b0 + self.batch_size]
                    try:
                        res: list[Any] = list(self.lm.generate([requests[i] for i in chunk]))
                    except TimeoutError as e:  # a slow chunk is counted and asked again on the next run
                        res = [e] * len(chunk)
                    if len(res) != len(chunk):
                        res = [RuntimeError(f"teacher returned {len(res)} results for {len(chunk)} requests")] * len(chunk)
                    done(list(zip(chunk, [r if isinstance(r, (GenerateResult, Exception)) else
                                          RuntimeError(f"teacher returned {type(r).__name__}") for r in res])))
        finally:
            bar.close()
            self.usage["seconds"] += time.perf_counter() - t0
        return out

    def report(self) -> dict[str, Any]:
        u = dict(self.usage)
        u.update(getattr(self.lm, "usage", {}) and {"endpoint_" + k: v for k, v in self.lm.usage.items()})
        u["teacher"] = self.name
        u["requests_per_s"] = u["sent"] / u["seconds"] if u["seconds"] else None
        u["tokens_per_s"] = u["completion_tokens"] / u["seconds"] if u["seconds"] else None
        if self.price_in or self.price_out:
            pin = u.get("endpoint_prompt_tokens") or u["prompt_tokens_est"]
            u["cost_estimate"] = round(pin * self.price_in / 1e6 + u["completion_tokens"] * self.price_out / 1e6, 6)
        u["failure_examples"] = self.failures[:5]
        return u


def load_python_teacher(spec: str) -> Any:
    """``py:module:factory`` -> ``factory()`` (a user's own backend implementing ``generate``)."""
    import importlib

    try:
        _, mod, fn = spec.split(":", 2)
        return getattr(importlib.import_module(mod), fn)()
    except (ValueError, ImportError, AttributeError) as e:
        raise InstructkitError(f"teacher {spec!r}: cannot load a python teacher ({type(e).__name__}: {e})") from None
