"""A continuous-batching decode engine for a transformers causal LM (optionally with LoRA adapters).

Requests join and leave the running batch between decode steps (token-level continuous batching).
How the batch is held: one left-padded ``DynamicCache`` for all running sequences plus a 2D attention
mask; each row's position ids count its real tokens only, so padding changes nothing but the shape.

* a step first *prefills* newly admitted requests (one left-padded forward for all of them, exactly like
  HF ``generate``'s first step) and concatenates their cache rows onto the batch (the shorter side is
  left-padded with zeros and masked); then it *decodes* one token for every running sequence;
* finished or cancelled sequences are dropped with an index-select, and leading columns that became
  pure padding are trimmed, so copies happen only when the batch changes, not every step;
* every sequence has its own sampling parameters, ``torch.Generator`` (seed), stop strings and adapter;
  rows of different LoRA adapters share one forward through peft's ``adapter_names=`` (mixed batch).

Two ways in: ``generate_many([(prompt_ids, params), ...])`` runs to completion in the caller's thread
(a library call, no server), and ``submit(prompt_ids, params, sink)`` + ``start()`` for the server: the
engine thread calls ``sink(Event)`` as text arrives; ``Request.cancel()`` frees the slot at the next step.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from instructkit.lm.sampling import (SamplingParams, StopChecker, TokenLogprob, adjust_logits, choose,
                                        make_generator, token_logprob)
from instructkit.lm.cache import BatchCache



def _plain(p: SamplingParams) -> bool:
    """Greedy with nothing that changes the logits: the token is the row's argmax."""
    return p.temperature <= 0 and not (p.logit_bias or p.presence_penalty or p.frequency_penalty)

class QueueFull(Exception):
    """More requests are waiting or running than the engine accepts (the server answers 429)."""


@dataclass
class Event:
    """What a sink receives: new text of completion ``index``; ``finish_reason`` set on its last event."""

    index: int
    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    logprobs: list[TokenLogprob] = field(default_factory=list)
    finish_reason: str | None = None    # stop | length | cancelled | error
    error: str | None = None


@dataclass
class Completion:
    text: str
    token_ids: list[int]
    finish_reason: str
    logprobs: list[TokenLogprob] | None = None


@dataclass
class RequestOutput:
    prompt_tokens: int
    outputs: list[Completion]


class _Seq:
    def __init__(self, req: "Request", index: int, tokenizer: Any):
        self.req, self.index = req, index
        self.params = req.params
        self.gen = make_generator(None if req.params.seed is None else req.params.seed + index)
        self.ids: list[int] = []
        self.logprobs: list[TokenLogprob] = []
        self.stopper = StopChecker(tokenizer, req.params.stop)
        self.sent = 0        # characters already handed to the sink
        self.n_sent_tok = 0  # tokens (and logprobs) already handed to the sink


class Request:
    def __init__(self, engine: "Engine", rid: int, prompt_ids: list[int], params: SamplingParams,
                 sink: Callable[[Event], None] | None):
        self.engine, self.id, self.prompt_ids, self.params, self.sink = engine, rid, prompt_ids, params, sink
        self.outputs: list[Completion | None] = [None] * params.n
        self.cancelled = False
        self.done = threading.Event()

    def cancel(self) -> None:
        """Stop generating (e.g. the client went away); the engine frees the slots at its next step."""
        self.cancelled = True
        with self.engine._cv:
            self.engine._cv.notify()

    def result(self) -> RequestOutput:
        return RequestOutput(len(self.prompt_ids), [o for o in self.outputs if o is not None])


class Engine:
    def __init__(self, model: Any, tokenizer: Any, *, max_batch_size: int = 32, max_queue: int = 256,
                 max_prefill_tokens: int = 4096, max_context: int | None = None,
                 eos_token_ids: Sequence[int] | None = None, prefix_min_tokens: int = 32):
        self.model, self.tok = model.eval(), tokenizer
        self.max_batch_size, self.max_queue, self.max_prefill_tokens = max_batch_size, max_queue, max_prefill_tokens
        self.prefix_min_tokens = prefix_min_tokens
        cfg = getattr(model, "config", None)
        self.max_context = max_context or getattr(cfg, "max_position_embeddings", None) or 2048
        self.eos = set(eos_token_ids if eos_token_ids is not None else default_eos(model, tokenizer))
        self.adapters: set[str] = set(getattr(model, "peft_config", {}) or {})
        self.device = next(model.parameters()).device
        self._waiting: deque[_Seq] = deque()
        self._running: list[_Seq] = []
        self._admitting: list[_Seq] = []  # popped from the queue, not yet in the batch (counted in ``load``)
        self._jobs: deque[tuple[Callable[[], Any], Future]] = deque()
        self._cache = BatchCache()
        self._ids = itertools.count()
        self._cv = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False
        self.stats = {"steps": 0, "prefills": 0, "max_batch": 0, "generated_tokens": 0, "prefix_tokens_reused": 0}
        #: a prompt prefix shared by a ``generate_many`` call (k-shot exemplars): its KV cache is computed
        #: once and every prefill whose prompts all start with it runs only their suffixes
        self._pin: list[int] | None = None
        self._pin_cache: Any = None

    # -- submission ---------------------------------------------------------------------------------
    @property
    def load(self) -> int:
        """Sequences waiting or running."""
        return len(self._waiting) + len(self._running) + len(self._admitting)

    def submit(self, prompt_ids: Sequence[int], params: SamplingParams,
               sink: Callable[[Event], None] | None = None) -> Request:
        if not prompt_ids:
            raise ValueError("the prompt is empty (no tokens)")
        if len(prompt_ids) + params.max_tokens > self.max_context:
            raise ValueError(f"prompt ({len(prompt_ids)} tokens) + max_tokens ({params.max_tokens}) exceeds the "
                             f"model's context length ({self.max_context})")
        if params.adapter is not None and params.adapter not in self.adapters:
            raise ValueError(f"unknown adapter {params.adapter!r}")
        req = Request(self, next(self._ids), list(prompt_ids), params, sink)
        with self._cv:
            if self.load + params.n > self.max_queue:
                raise QueueFull(f"{self.load} sequences waiting or running (max {self.max_queue})")
            self._waiting.extend(_Seq(req, i, self.tok) for i in range(params.n))
            self._cv.notify()
        return req

    def call(self, fn: Callable[[], Any]) -> Future:
        """Run ``fn`` in the engine thread between steps (e.g. scoring a prompt); a Future of its result."""
        fut: Future = Future()
        with self._cv:
            self._jobs.append((fn, fut))
            self._cv.notify()
        return fut

    def generate_many(self, items: Sequence[tuple[Sequence[int], SamplingParams]]) -> list[RequestOutput]:
        """Generate for every ``(prompt_ids, params)``; batched continuously; returns in input order.
        Prompts sharing >= ``prefix_min_tokens`` leading tokens (k-shot exemplars) prefill that prefix once."""
        self._pin_prefix([ids for ids, _ in items])
        try:
            reqs = [self.submit(ids, p) for ids, p in items]
            for r in reqs:
                while not r.done.is_set():
                    if self._thread is None:
                        self.step()
                    else:
                        r.done.wait()
        finally:
            self._pin, self._pin_cache = None, None
        return [r.result() for r in reqs]

    def _pin_prefix(self, prompts: Sequence[Sequence[int]]) -> None:
        if len(prompts) < 2 or self.adapters:  # mixed-adapter rows would need the prefix per adapter
            return
        from instructkit.lm.prefix import lcp

        first = prompts[0]
        # every prompt keeps >= 1 token of its own: its last one gives the first logits
        n = min(min(len(p) for p in prompts) - 1, *(lcp(first, p) for p in prompts[1:]))
        if self.prefix_min_tokens and n >= self.prefix_min_tokens:
            self._pin, self._pin_cache = list(first[:n]), None

    def score(self, prompt_ids: Sequence[int], top: int = 0, adapter: str | None = None) -> list[TokenLogprob]:
        """Log-prob of every prompt token given the ones before (the first's is None); for ``echo``."""
        import torch

        ids = torch.tensor([list(prompt_ids)], device=self.device)
        kw: dict[str, Any] = {"adapter_names": [adapter or "__base__"]} if self.adapters else {}
        with torch.inference_mode():
            logp = torch.log_softmax(self.model(input_ids=ids, use_cache=False, **kw).logits[0].float(), -1).cpu()
        return [TokenLogprob(int(prompt_ids[0]), None)] + [token_logprob(logp[i - 1], int(prompt_ids[i]), top) for i in range(1, len(prompt_ids))]

    # -- the background thread ----------------------------------------------------------------------
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
            except Exception as e:  # a failed forward must not kill the server: fail the affected requests
                self._fail_all(f"{type(e).__name__}: {e}")

    def _fail_all(self, msg: str) -> None:
        # the batch's cache may be half-updated: fail every sequence in it; queued requests stay queued
        for s in self._running + self._admitting:
            self._finish(s, "error", error=msg)
        self._running, self._admitting = [], []
        self._cache = BatchCache()

    # -- one scheduler iteration ----------------------------------------------------------------------
    def step(self) -> None:
        import torch

        with self._cv:
            jobs, self._jobs = list(self._jobs), deque()
        for fn, fut in jobs:
            try:
                fut.set_result(fn())
            except Exception as e:
                fut.set_exception(e)
        with torch.inference_mode():
            self._drop([s for s in self._running if s.req.cancelled], "cancelled")
            new = self._admit()
            if new:
                self._prefill(new)
            if self._running:
                self._decode()
        self.stats["steps"] += 1

    def _admit(self) -> list[_Seq]:
        new: list[_Seq] = []
        budget = self.max_prefill_tokens
        with self._cv:
            while self._waiting and len(self._running) + len(new) < self.max_batch_size:
                s = self._waiting[0]
                if s.req.cancelled:
                    self._waiting.popleft()
                    self._finish(s, "cancelled")
                    continue
                if new and len(s.req.prompt_ids) > budget:
                    break
                budget -= len(s.req.prompt_ids)
                new.append(self._waiting.popleft())
                self._admitting.append(new[-1])
        return new

    def _forward(self, seqs: list[_Seq], input_ids: Any, attention_mask: Any, position_ids: Any, cache: Any) -> Any:
        kw: dict[str, Any] = dict(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                                  past_key_values=cache, use_cache=True, logits_to_keep=1)
        if self.adapters:  # peft mixed batch: each row picks its adapter ("__base__" = none)
            kw["adapter_names"] = [s.params.adapter or "__base__" for s in seqs]
        return self.model(**kw).logits[:, -1].float()  # stays on the device (see _advance)

    def _prefill(self, new: list[_Seq]) -> None:
        import torch

        # the n completions of one request share its prompt: prefill it once, then copy its cache rows
        first: dict[int, int] = {}
        row = [first.setdefault(s.req.id, len(first)) for s in new]
        uniq = [new[row.index(k)] for k in range(len(first))]
        pin = self._pin
        P = len(pin) if pin and all(s.req.prompt_ids[:len(pin)] == pin for s in uniq) else 0
        T = max(len(s.req.prompt_ids) - P for s in uniq)
        pad = self.tok.pad_token_id if self.tok.pad_token_id is not None else 0
        ids = torch.full((len(uniq), T), pad, dtype=torch.long)
        mask = torch.ones((len(uniq), P + T), dtype=torch.long)
        for b, s in enumerate(uniq):  # left padding: every prompt ends at the right edge
            p = s.req.prompt_ids[P:]
            ids[b, T - len(p):] = torch.tensor(p)
            mask[b, P: P + T - len(p)] = 0  # with a shared prefix the padding sits between it and the suffix
        # position ids as HF generate computes them: count of real tokens before, pads at 1
        pos = (mask.cumsum(-1) - 1).masked_fill(mask == 0, 1)[:, P:]
        if P:
            from instructkit.lm.prefix import expand_cache, prefix_cache
            if self._pin_cache is None:
                self._pin_cache = prefix_cache(self.model, pin, self.device)
            cache = expand_cache(self._pin_cache, len(uniq))
            self.stats["prefix_tokens_reused"] += P * len(uniq)
        else:
            cache = BatchCache.new_dynamic(self.model)
        logits = self._forward(uniq, ids.to(self.device), mask.to(self.device), pos.to(self.device), cache)
        if len(uniq) < len(new):
            idx = torch.tensor(row)
            logits, mask = logits.index_select(0, idx), mask.index_select(0, idx)
            for layer in cache.layers:
                layer.keys = layer.keys.index_select(0, idx.to(layer.keys.device))
                layer.values = layer.values.index_select(0, idx.to(layer.values.device))
        self._cache.extend(cache, mask.to(self.device))
        self._running.extend(new)
        self._admitting = []
        self.stats["prefills"] += 1
        self._advance(new, logits)

    def _decode(self) -> None:
        import torch

        seqs = self._running
        ids = torch.tensor([[s.ids[-1]] for s in seqs], dtype=torch.long, device=self.device)
        mask = self._cache.grow()
        pos = (mask.sum(-1, keepdim=True) - 1)
        logits = self._forward(seqs, ids, mask, pos, self._cache.cache)
        self.stats["max_batch"] = max(self.stats["max_batch"], len(seqs))
        self._advance(seqs, logits)

    def _advance(self, seqs: list[_Seq], logits: Any) -> None:
        """Choose one token per sequence, check its stop conditions, tell its sink, drop finished rows."""
        import torch

        # logits stay on the device: greedy rows send B token ids to the host; only the rows that sample
        # (seeded CPU generators) copy their vocabulary row
        need_lp = any(s.params.logprobs for s in seqs)
        logp = torch.log_softmax(logits, dim=-1) if need_lp else None
        greedy = logits.argmax(-1).tolist()
        sampled = [b for b, s in enumerate(seqs) if not _plain(s.params)]
        host = dict(zip(sampled, logits[sampled].cpu())) if sampled else {}
        done: list[tuple[_Seq, str]] = []
        for b, s in enumerate(seqs):
            p = s.params
            tok = greedy[b] if b not in host else choose(adjust_logits(host[b], p, s.ids), p, s.gen)
            s.ids.append(tok)
            if p.logprobs and logp is not None:
                s.logprobs.append(token_logprob(logp[b], tok, p.top_logprobs))
            self.stats["generated_tokens"] += 1
            text = ""
            if tok in self.eos and not p.ignore_eos:
                s.stopper.feed(s.ids[:-1])  # the final text: everything before the EOS token
                reason: str | None = "stop"
            else:
                text, stopped = s.stopper.feed(s.ids)
                reason = "stop" if stopped else None
            if reason is None and (len(s.ids) >= p.max_tokens or len(s.req.prompt_ids) + len(s.ids) >= self.max_context):
                reason = "length"
            if reason is None:
                self._emit(s, text)
            else:
                done.append((s, reason))
        if done:
            for s, reason in done:
                self._finish(s, reason)
            self._drop([s for s, _ in done], None)

    def _emit(self, s: _Seq, text: str, finish: str | None = None, error: str | None = None) -> None:
        ev = Event(s.index, text[s.sent:], s.ids[s.n_sent_tok:], s.logprobs[s.n_sent_tok:], finish, error)
        s.sent, s.n_sent_tok = max(s.sent, len(text)), len(s.ids)
        if s.req.sink is not None and (ev.text or ev.token_ids or finish):
            s.req.sink(ev)

    def _finish(self, s: _Seq, reason: str, error: str | None = None) -> None:
        text = s.stopper.text
        s.req.outputs[s.index] = Completion(text, list(s.ids), reason, s.logprobs if s.params.logprobs else None)
        self._emit(s, text, reason, error)
        if all(o is not None for o in s.req.outputs):
            s.req.done.set()

    def _drop(self, seqs: list[_Seq], reason: str | None) -> None:
        if not seqs:
            return
        gone = {id(s) for s in seqs}
        if reason is not None:
            for s in seqs:
                self._finish(s, reason)
        keep = [i for i, s in enumerate(self._running) if id(s) not in gone]
        self._running = [self._running[i] for i in keep]
        self._cache.select(keep)


def default_eos(model: Any, tokenizer: Any) -> list[int]:
    """End-of-sequence ids: the model's generation_config (int or list) plus the tokenizer's eos."""
    out: list[int] = []
    gc = getattr(model, "generation_config", None)
    e = getattr(gc, "eos_token_id", None)
    out += [e] if isinstance(e, int) else list(e or [])
    if tokenizer.eos_token_id is not None:
        out.append(tokenizer.eos_token_id)
    return sorted(set(out))
