"""What the engine holds per request and per sequence, and what it hands back.

A :class:`Request` is one ``Engine.submit`` call (a prompt and its :class:`SamplingParams`); it owns ``n``
:class:`Seq` (one per completion). Sinks receive :class:`Event` s; ``Request.outputs`` collects one
:class:`Completion` per choice and ``Request.done`` is set once all are in. A :class:`Pin` is a prompt prefix
shared by a group of requests of one ``generate_many`` call (one task's k-shot exemplars): its KV cache is
computed once, in the engine thread, belongs to those requests only (two callers never share or clear each
other's) and is released once the group's last sequence has joined the batch.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from instructkit.lm.detok import StopChecker
from instructkit.lm.sampling import SamplingParams, TokenLogprob, derive_seed, make_generator


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


class Pin:
    """A prompt prefix whose KV cache is shared by the prefills of one group of requests (one task's k-shot
    prompts in one ``generate_many`` / ``as_completed`` call)."""

    def __init__(self, ids: Sequence[int]):
        self.ids = list(ids)
        self.cache: Any = None   # computed lazily by the engine thread
        self.users = 0           # sequences still to be prefilled on it: at 0 the cache is released


class Countdown:
    """A request's sink that reports its index once all ``n`` of its completions have finished."""

    def __init__(self, index: int, n: int, report: Callable[[int], None]):
        self.index, self.left, self.report = index, n, report

    def __call__(self, ev: Event) -> None:
        if ev.finish_reason is not None:
            self.left -= 1
            if not self.left:
                self.report(self.index)


class Request:
    def __init__(self, rid: int, prompt_ids: list[int], params: SamplingParams,
                 sink: Callable[[Event], None] | None, wake: Callable[[], None], pin: Pin | None = None):
        self.id, self.prompt_ids, self.params, self.sink, self.pin = rid, prompt_ids, params, sink, pin
        self._wake = wake
        self.outputs: list[Completion | None] = [None] * params.n
        self.cancelled = False
        self.error: str | None = None   # why the engine failed this request (its choices end with "error")
        self.done = threading.Event()

    def cancel(self) -> None:
        """Stop generating (e.g. the client went away); the engine frees the slots at its next step."""
        self.cancelled = True
        self._wake()

    def result(self) -> RequestOutput:
        return RequestOutput(len(self.prompt_ids), [o for o in self.outputs if o is not None])


class Seq:
    """One completion being generated: its tokens, generator, stop handling and what was sent."""

    def __init__(self, req: Request, index: int, tokenizer: Any, device: Any = "cpu"):
        self.req, self.index = req, index
        self.params = req.params
        self.gen = make_generator(derive_seed(req.params.seed, index), device)
        self.ids: list[int] = []
        self.logprobs: list[TokenLogprob] = []
        self.stopper = StopChecker(tokenizer, req.params.stop)
        self.n_sent_tok = 0  # tokens (and logprobs) already handed to the sink
        self.finished = False

    def emit(self, text: str, finish: str | None = None, error: str | None = None) -> None:
        ev = Event(self.index, text, self.ids[self.n_sent_tok:], self.logprobs[self.n_sent_tok:], finish, error)
        self.n_sent_tok = len(self.ids)
        if self.req.sink is not None and (ev.text or ev.token_ids or finish):
            self.req.sink(ev)

    def finish(self, reason: str, error: str | None = None, text_ids: Sequence[int] | None = None,
               pending: str = "") -> None:
        """Record the completion and tell the sink (``pending``: text released this step, not yet sent);
        ``text_ids``: the ids the text covers (EOS excluded)."""
        if self.finished:
            return
        self.finished = True
        rest = pending + self.stopper.finish(self.ids if text_ids is None else text_ids)
        lps = self.logprobs if self.params.logprobs else None
        self.req.outputs[self.index] = Completion(self.stopper.text, list(self.ids), reason, lps)
        self.emit(rest, reason, error)
        if all(o is not None for o in self.req.outputs):
            self.req.done.set()


def check_request(prompt_ids: Sequence[int], params: SamplingParams, *, vocab_size: int, max_context: int,
                  adapters: set[str]) -> list[int]:
    """The prompt as a list of ints, or ``ValueError`` naming what is wrong (before anything is queued:
    a bad id would make the forward raise inside a batch other requests share)."""
    import math
    import operator

    ids = list(prompt_ids)
    if not ids:
        raise ValueError("the prompt is empty (no tokens)")
    for i, t in enumerate(ids):
        try:
            ids[i] = v = operator.index(t)  # ints, numpy/torch integers; not floats
        except TypeError:
            v = None
        if v is None or isinstance(t, bool) or not 0 <= v < vocab_size:
            raise ValueError(f"prompt token {i} is {t!r}: token ids are integers 0..{vocab_size - 1}")
    if not (isinstance(params.n, int) and params.n >= 1):
        raise ValueError(f"n must be a positive integer, got {params.n!r}")
    if not (isinstance(params.max_tokens, int) and params.max_tokens >= 1):
        raise ValueError(f"max_tokens must be a positive integer, got {params.max_tokens!r}")
    if len(ids) + params.max_tokens > max_context:
        raise ValueError(f"prompt ({len(ids)} tokens) + max_tokens ({params.max_tokens}) exceeds the "
                         f"model's context length ({max_context})")
    if params.seed is not None and (isinstance(params.seed, bool) or not isinstance(params.seed, int)):
        raise ValueError(f"seed must be an integer, got {params.seed!r}")
    if not (math.isfinite(params.temperature) and params.temperature >= 0 and 0 < params.top_p <= 1):
        raise ValueError(f"temperature must be >= 0 and top_p in (0, 1] (got {params.temperature}, {params.top_p})")
    if not 0 <= params.top_logprobs <= vocab_size:
        raise ValueError(f"top_logprobs must be 0..{vocab_size}, got {params.top_logprobs}")
    for k, v in params.logit_bias.items():
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < vocab_size or not math.isfinite(v):
            raise ValueError(f"logit_bias: invalid token id {k!r} or bias {v!r} (ids 0..{vocab_size - 1})")
    if params.adapter is not None and params.adapter not in adapters:
        raise ValueError(f"unknown adapter {params.adapter!r}")
    return ids
