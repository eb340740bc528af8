"""A continuous-batching decode engine for a transformers causal LM (optionally with LoRA adapters).

Requests join and leave the running batch between decode steps (token-level continuous batching); every
sequence has its own sampling parameters, ``torch.Generator`` (seed), stop strings and adapter, and rows
of different LoRA adapters share one forward through peft's ``adapter_names=`` (mixed batch). The step
mechanics (prefill, decode, token choice, fault isolation) are in ``batch.py``; this module is the request
lifecycle: validation, the queue, admission, the background thread.

Public API (stable; the server, evaluation and RL rollouts build on it):

* ``submit(prompt_ids, params, sink=None) -> Request``: queue a request (``ValueError`` for a bad one,
  ``QueueFull`` when full). The engine calls ``sink(Event)`` as text arrives (from the engine thread);
  ``Request.done`` is set when all ``params.n`` completions are in ``Request.outputs``;
  ``Request.cancel()`` frees its slots at the next step.
* ``generate_many([(prompt_ids, params), ...]) -> [RequestOutput]``: run to completion, in input order
  (in the caller's thread when the engine thread is not started); ``as_completed(items)`` yields
  ``(index, RequestOutput)`` as each finishes (all queued at once: the batch stays full to the end). Each
  group of prompts sharing >= ``prefix_min_tokens`` leading tokens (one task's k-shot exemplars) prefills
  that prefix once.
* ``stream(prompt_ids, params) -> Iterator[Event]``: one request's events as they come; closing the
  iterator cancels the request.
* ``start()`` / ``stop()`` the engine thread (the server); ``call(fn)`` runs ``fn`` between steps;
  ``score(ids)`` gives prompt log-probs (``echo``); ``status()`` counts waiting / admitting / running.

A request never fails another: ids are range-checked in ``submit``, and a forward that raises fails only
the requests that make it raise (``batch.py``).
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
from collections import deque
from concurrent.futures import Future
from typing import Any, Callable, Iterator, Sequence

from instructkit.lm.batch import Batch
from instructkit.lm.cache import BatchCache
from instructkit.lm.requests import (Completion, Countdown, Event, Pin, QueueFull, Request, RequestOutput,  # noqa: F401
                                     Seq, check_request)
from instructkit.lm.sampling import SamplingParams, TokenLogprob, token_logprob

log = logging.getLogger("instructkit.engine")


class Engine:
    def __init__(self, model: Any, tokenizer: Any, *, max_batch_size: int = 32, max_queue: int = 256,
                 max_prefill_tokens: int = 4096, max_context: int | None = None,
                 eos_token_ids: Sequence[int] | None = None, prefix_min_tokens: int = 32, live_adapter: bool = False):
        self.model, self.tok = model.eval(), tokenizer
        self.max_batch_size, self.max_queue, self.max_prefill_tokens = max_batch_size, max_queue, max_prefill_tokens
        self.prefix_min_tokens = prefix_min_tokens
        cfg = getattr(model, "config", None)
        self.max_context = max_context or getattr(cfg, "max_position_embeddings", None) or 2048
        self.eos = set(eos_token_ids if eos_token_ids is not None else default_eos(model, tokenizer))
        # live_adapter: every row runs the model's active adapter with plain forwards, no per-row adapter
        # names (online RL decodes with the policy it trains; peft's mixed batches also refuse DoRA)
        self.adapters: set[str] = set() if live_adapter else set(getattr(model, "peft_config", {}) or {})
        self.device = next(model.parameters()).device
        emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
        #: prompt ids must be below this (the embedding table's rows)
        self.vocab_size = int(getattr(emb, "num_embeddings", 0) or getattr(cfg, "vocab_size", 0) or len(tokenizer))
        self.stats = {"steps": 0, "prefills": 0, "max_batch": 0, "generated_tokens": 0, "prefix_tokens_reused": 0}
        self._batch = Batch(model, tokenizer, eos=self.eos, max_context=self.max_context, adapters=self.adapters,
                            stats=self.stats, max_rows=max_batch_size)
        self._waiting: deque[Seq] = deque()
        self._admitting: list[Seq] = []  # popped from the queue, not yet in the batch (counted in ``load``)
        self._jobs: deque[tuple[Callable[[], Any], Future]] = deque()
        self._ids = itertools.count()
        self._cv = threading.Condition()
        self._step_lock = threading.Lock()  # one step at a time, whoever runs it (thread or callers)
        self._thread: threading.Thread | None = None
        self._stopping = False

    # -- state ----------------------------------------------------------------------------------------------
    @property
    def _running(self) -> list[Seq]:
        return self._batch.running

    @property
    def _cache(self) -> BatchCache:
        return self._batch.cache

    @property
    def load(self) -> int:
        """Sequences waiting, being admitted or running."""
        return len(self._waiting) + len(self._running) + len(self._admitting)

    def status(self) -> dict[str, int]:
        return {"running": len(self._running), "admitting": len(self._admitting), "waiting": len(self._waiting)}

    # -- submission -----------------------------------------------------------------------------------------
    def submit(self, prompt_ids: Sequence[int], params: SamplingParams, sink: Callable[[Event], None] | None = None,
               *, pin: Pin | None = None) -> Request:
        ids = check_request(prompt_ids, params, vocab_size=self.vocab_size, max_context=self.max_context,
                            adapters=self.adapters)
        req = Request(next(self._ids), ids, params, sink, self._wake, pin)
        seqs = [Seq(req, i, self.tok, self.device) for i in range(params.n)]  # all built before any is queued
        with self._cv:
            if self.load + params.n > self.max_queue:
                raise QueueFull(f"{self.load} sequences waiting or running (max {self.max_queue})")
            self._waiting.extend(seqs)
            self._cv.notify()
        return req

    def _wake(self) -> None:
        with self._cv:
            self._cv.notify()

    def call(self, fn: Callable[[], Any]) -> Future:
        """Run ``fn`` in the engine thread between steps (e.g. scoring a prompt); a Future of its result."""
        fut: Future = Future()
        with self._cv:
            self._jobs.append((fn, fut))
            self._cv.notify()
        return fut

    def generate_many(self, items: Sequence[tuple[Sequence[int], SamplingParams]]) -> list[RequestOutput]:
        """Generate for every ``(prompt_ids, params)``; batched continuously; returns in input order.
        Safe to call from any thread, also while the engine thread runs."""
        out: list[Any] = [None] * len(items)
        for i, o in self.as_completed(items):
            out[i] = o
        return out

    def as_completed(self, items: Sequence[tuple[Sequence[int], SamplingParams]]
                     ) -> Iterator[tuple[int, RequestOutput]]:
        """``generate_many`` yielding ``(input index, output)`` as each request finishes: every item is queued
        at once, so the batch stays full until the queue drains, and the caller can store results meanwhile.
        Closing the iterator early cancels what is left."""
        from instructkit.lm.prefix import prompt_pins

        pins = prompt_pins([ids for ids, _ in items], 0 if self.adapters else self.prefix_min_tokens)
        finished: queue.SimpleQueue = queue.SimpleQueue()
        reqs: list[Request] = []
        try:
            for i, ((ids, p), pin) in enumerate(zip(items, pins)):
                if pin is not None:  # counted before the engine thread can prefill it
                    pin.users += p.n
                reqs.append(self.submit(ids, p, Countdown(i, p.n, finished.put), pin=pin))
            for _ in reqs:
                if self._thread is None:
                    while finished.empty():
                        self.step()
                i = finished.get()
                yield i, reqs[i].result()
        finally:
            self._abandon(reqs)

    def stream(self, prompt_ids: Sequence[int], params: SamplingParams) -> Iterator[Event]:
        """One request's events as they come (``finish_reason`` set on each choice's last)."""
        events: queue.SimpleQueue = queue.SimpleQueue()
        req = self.submit(prompt_ids, params, events.put)
        left = params.n
        try:
            while left:
                if self._thread is None:
                    while events.empty():
                        self.step()
                ev = events.get()
                left -= ev.finish_reason is not None
                yield ev
        finally:
            self._abandon([req])

    def _abandon(self, reqs: Sequence[Request]) -> None:
        """Cancel requests the caller no longer waits for (an exception, a closed stream)."""
        live = [r for r in reqs if not r.done.is_set()]
        for r in live:
            r.cancel()
        if live and self._thread is None:
            with self._step_lock:
                self._reap()

    def score(self, prompt_ids: Sequence[int], top: int = 0, adapter: str | None = None) -> list[TokenLogprob]:
        """Log-prob of every prompt token given the ones before (the first's is None); for ``echo``."""
        import torch

        prompt_ids = check_request(prompt_ids, SamplingParams(max_tokens=1), vocab_size=self.vocab_size,
                                   max_context=self.max_context + 1, adapters=self.adapters)
        ids = torch.tensor([prompt_ids], device=self.device)
        kw: dict[str, Any] = {"adapter_names": [adapter or "__base__"]} if self.adapters else {}
        with torch.inference_mode():
            logp = torch.log_softmax(self.model(input_ids=ids, use_cache=False, **kw).logits[0].float(), -1).cpu()
        return [TokenLogprob(int(prompt_ids[0]), None)] + [token_logprob(logp[i - 1], int(prompt_ids[i]), top)
                                                            for i in range(1, len(prompt_ids))]

    # -- the background thread ----------------------------------------------------------------------------
    def start(self) -> "Engine":
        if self._thread is None:
            self._stopping = False
            self._thread = threading.Thread(target=self._loop, name="instructkit-engine", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        with self._cv:
            self._stopping = True
            self._cv.notify()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _loop(self) -> None:
        while True:
            with self._cv:
                while not (self._stopping or self._waiting or self._running or self._jobs):
                    self._cv.wait()
                if self._stopping:
                    return
            try:
                self.step()
            except Exception as e:  # not a forward (those are isolated in batch.py): a bug; keep serving
                log.exception("engine step failed")
                self._fail_in_flight(f"{type(e).__name__}: {e}")

    def _fail_in_flight(self, msg: str) -> None:
        with self._step_lock:
            for s in [*self._running, *self._admitting]:
                s.req.error, s.req.cancelled = s.req.error or msg, True
                s.finish("error", s.req.error)
            self._batch.running, self._batch.cache, self._admitting = [], BatchCache(self.max_batch_size), []

    # -- one scheduler iteration ----------------------------------------------------------------------------
    def step(self) -> None:
        import torch

        with self._step_lock:
            with self._cv:
                jobs, self._jobs = list(self._jobs), deque()
            for fn, fut in jobs:
                try:
                    fut.set_result(fn())
                except Exception as e:
                    fut.set_exception(e)
            with torch.inference_mode():
                self._reap()
                new = self._admit()
                if new:
                    try:
                        self._batch.prefill(new)
                    finally:
                        self._admitting = []
                if self._running:
                    self._batch.decode()
            self.stats["steps"] += 1

    def _reap(self) -> None:
        """Drop cancelled sequences from the batch."""
        gone = [s for s in self._running if s.req.cancelled]
        for s in gone:
            s.finish("error" if s.req.error else "cancelled", s.req.error)
        self._batch.remove(gone)

    def _admit(self) -> list[Seq]:
        new: list[Seq] = []
        budget = self.max_prefill_tokens
        with self._cv:
            while self._waiting and len(self._running) + len(new) < self.max_batch_size:
                s = self._waiting[0]
                if s.req.cancelled:
                    self._waiting.popleft()
                    s.finish("error" if s.req.error else "cancelled", s.req.error)
                    continue
                # a pinned prefix is prefilled once for its whole group: only the suffix is this row's work
                cost = len(s.req.prompt_ids) - (len(s.req.pin.ids) if s.req.pin is not None else 0)
                if new and cost > budget:
                    break
                budget -= cost
                new.append(self._waiting.popleft())
            self._admitting = list(new)
        return new


def default_eos(model: Any, tokenizer: Any) -> list[int]:
    """End-of-sequence ids: the model's generation_config (int or list) plus the tokenizer's eos."""
    out: list[int] = []
    gc = getattr(model, "generation_config", None)
    e = getattr(gc, "eos_token_id", None)
    out += [e] if isinstance(e, int) else list(e or [])
    if tokenizer.eos_token_id is not None:
        out.append(tokenizer.eos_token_id)
    return sorted(set(out))
