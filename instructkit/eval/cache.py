"""Request-level result cache: what makes an interrupted evaluation resumable.

Every request is keyed by a hash of (model fingerprint, request fields). Results are appended to
``cache.jsonl`` in the output folder and flushed + fsynced, so after a crash or Ctrl-C a rerun recomputes
only what is missing. Scoring goes in chunks sized so a flush happens at least every ``flush_seconds``.
Generation with a backend that streams results (``generate_iter``: the local engine) goes in one call - the
engine keeps its batch full across tasks - and each result is written as it finishes (fsynced at least every
``flush_seconds``). A torn last line (killed mid-write) is ignored.
The wrapper also times the backend calls it makes, for the throughput report.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from instructkit.jsonl import read_log
from instructkit.lm.api import GenerateRequest, GenerateResult, LoglikelihoodRequest, LoglikelihoodResult


def model_fingerprint(lm: Any) -> str:
    fp = getattr(lm, "fingerprint", None)
    return str(fp) if fp else str(getattr(lm, "name", type(lm).__name__))


def request_key(fingerprint: str, kind: str, req: Any) -> str:
    d = {k: v for k, v in asdict(req).items() if k != "key"}
    blob = json.dumps([fingerprint, kind, d], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


class CachedLM:
    """Wraps an LM: answers cached requests from ``path`` and appends new results to it."""

    def __init__(self, lm: Any, path: str | Path | None, chunk_size: int = 64, flush_seconds: float | None = 30.0):
        self.lm, self.chunk_size = lm, max(1, chunk_size)
        # results reach the disk at least every flush_seconds: chunks shrink to what the backend computes in
        # that time (measured), never below one backend batch; a kill loses at most that much work
        self.flush_seconds = flush_seconds
        self.min_chunk = max(1, min(self.chunk_size, int(getattr(lm, "batch_size", 1) or 1)))
        self._sec_per_req: dict[str, float] = {}
        self.name = getattr(lm, "name", "model")
        self.fingerprint = model_fingerprint(lm)
        self.path = Path(path) if path else None
        self.store: dict[str, dict] = {}
        self.computed = {"loglikelihood": 0, "generate": 0}
        self.cached_hits = {"loglikelihood": 0, "generate": 0}
        self.seconds = {"loglikelihood": 0.0, "generate": 0.0}
        self.gen_tokens = 0
        if self.path:
            # a torn final line from an interrupted write is unreadable: that request is recomputed
            self.store.update((rec["k"], rec["r"]) for rec in read_log(self.path, ("k", "r"))[0])

    def _run(self, kind: str, reqs: Sequence[Any], call: Callable[[list], list], build: Callable[[dict], Any],
             on_done: Callable[[list[int]], None] | None = None,
             stream: Callable[[list], Iterator[tuple[int, Any]]] | None = None) -> list[Any]:
        """Answer ``reqs`` from the store, compute the rest: through ``stream`` (all at once, each result stored
        as it arrives) when the backend has one, else ``call`` in chunks. ``on_done(indices)``: progress."""
        keys = [request_key(self.fingerprint, kind, r) for r in reqs]
        out: list[Any] = [None] * len(reqs)
        todo = []
        for i, k in enumerate(keys):
            if k in self.store:
                out[i] = build(self.store[k])
                self.cached_hits[kind] += 1
            else:
                todo.append(i)
        if on_done and len(todo) < len(reqs):
            on_done(sorted(set(range(len(reqs))) - set(todo)))
        fh = self.path.open("a", encoding="utf-8") if self.path else None
        try:
            if stream is not None:
                if todo:
                    self._stream(kind, reqs, todo, keys, out, stream, fh, on_done)
            else:
                self._chunks(kind, reqs, todo, keys, out, call, fh, on_done)
        finally:
            if fh:
                fh.close()
        return out

    def _chunks(self, kind: str, reqs: Sequence[Any], todo: list[int], keys: list[str], out: list[Any],
                call: Callable[[list], list], fh: Any, on_done: Callable[[list[int]], None] | None) -> None:
        c0 = 0
        while c0 < len(todo):
            idx = todo[c0: c0 + self._next_chunk(kind)]
            c0 += len(idx)
            t0 = time.perf_counter()
            res = call([reqs[i] for i in idx])
            dt = time.perf_counter() - t0
            self.seconds[kind] += dt
            self._sec_per_req[kind] = dt / len(idx)
            for i, r in zip(idx, res):
                out[i] = r
                self._record(kind, keys[i], r, fh)
            if fh:
                fh.flush()
                os.fsync(fh.fileno())
            if on_done:
                on_done(idx)

    def _record(self, kind: str, key: str, r: Any, fh: Any) -> None:
        self.computed[kind] += 1
        self.store[key] = d = asdict(r)
        if isinstance(r, GenerateResult):
            self.gen_tokens += sum(r.n_tokens)
        if fh:
            fh.write(json.dumps({"k": key, "r": d}, ensure_ascii=False) + "\n")

    def _stream(self, kind: str, reqs: Sequence[Any], todo: list[int], keys: list[str], out: list[Any],
                stream: Callable[[list], Iterator[tuple[int, Any]]], fh: Any,
                on_done: Callable[[list[int]], None] | None) -> None:
        """Every uncached request in one backend call (its batch stays full across tasks and to the end); each
        result is written and flushed to the OS as it arrives (a killed process loses none), fsynced at least
        every ``flush_seconds``."""
        t0 = synced = time.perf_counter()
        every = self.flush_seconds or 0.0
        results = stream([reqs[i] for i in todo])
        try:
            for j, r in results:
                i = todo[j]
                out[i] = r
                self._record(kind, keys[i], r, fh)
                if fh:
                    fh.flush()
                    if time.perf_counter() - synced >= every:
                        os.fsync(fh.fileno())
                        synced = time.perf_counter()
                if on_done:
                    on_done([i])
        finally:
            getattr(results, "close", lambda: None)()  # stopped early (an error here): the backend cancels the rest
            self.seconds[kind] += time.perf_counter() - t0
            if fh:
                fh.flush()
                os.fsync(fh.fileno())

    def _next_chunk(self, kind: str) -> int:
        """Requests in the next backend call: as many as fit in flush_seconds at the measured rate (the first
        call: one batch), a multiple of the backend batch, between one batch and chunk_size; flush_seconds=None:
        always chunk_size."""
        if self.flush_seconds is None:  # fixed chunks
            return self.chunk_size
        rate = self._sec_per_req.get(kind)
        if rate is None:
            return self.min_chunk
        fit = int(self.flush_seconds / max(rate, 1e-9))
        fit -= fit % self.min_chunk
        return max(self.min_chunk, min(self.chunk_size, fit))

    def loglikelihood(self, reqs: Sequence[LoglikelihoodRequest],
                      on_done: Callable[[list[int]], None] | None = None) -> list[LoglikelihoodResult]:
        return self._run("loglikelihood", reqs, self.lm.loglikelihood, lambda d: LoglikelihoodResult(**d), on_done)

    def generate(self, reqs: Sequence[GenerateRequest],
                 on_done: Callable[[list[int]], None] | None = None) -> list[GenerateResult]:
        """Generate (cached ones from the store); a backend with ``generate_iter`` (the local engine) gets every
        uncached request in one call, so continuous batching spans every task passed here."""
        return self._run("generate", reqs, self.lm.generate, lambda d: GenerateResult(**d), on_done,
                         getattr(self.lm, "generate_iter", None))
