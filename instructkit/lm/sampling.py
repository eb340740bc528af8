"""Per-sequence decoding pieces of the engine: sampling parameters, next-token choice, stop handling.

Kept apart from the scheduler (``engine.py``) so each piece reads top to bottom and is tested alone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Sequence


@dataclass
class SamplingParams:
    """How one request is decoded (OpenAI semantics)."""

    max_tokens: int = 256
    temperature: float = 0.0            # 0 = greedy
    top_p: float = 1.0
    n: int = 1                          # independent completions of the same prompt
    stop: list[str] = field(default_factory=list)   # stop strings: generation ends there, not returned
    seed: int | None = None             # completion i samples with torch.Generator seeded seed + i
    logprobs: bool = False              # log-prob of each chosen token (raw model distribution)
    top_logprobs: int = 0               # and the k most likely alternatives
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: dict[int, float] = field(default_factory=dict)
    adapter: str | None = None          # LoRA adapter name; None = the base model
    ignore_eos: bool = False


@dataclass
class TokenLogprob:
    token_id: int
    logprob: float | None      # None: the first prompt token (nothing before it to predict it from)
    top: list[tuple[int, float]] = field(default_factory=list)


def make_generator(seed: int | None) -> Any:
    import torch
    g = torch.Generator()
    g.manual_seed(seed if seed is not None else int.from_bytes(os.urandom(8), "little") >> 1)
    return g


def adjust_logits(logits: Any, p: SamplingParams, generated: Sequence[int]) -> Any:
    """OpenAI's logit_bias, presence and frequency penalties on one row (fp32, CPU)."""
    import torch
    if p.logit_bias:
        ids = torch.tensor(list(p.logit_bias), dtype=torch.long)
        logits = logits.clone()
        logits[ids] += torch.tensor(list(p.logit_bias.values()), dtype=logits.dtype)
    if (p.presence_penalty or p.frequency_penalty) and generated:
        ids, counts = torch.tensor(list(generated), dtype=torch.long).unique(return_counts=True)
        logits = logits.clone()
        logits[ids] -= p.presence_penalty + p.frequency_penalty * counts.to(logits.dtype)
    return logits


def choose(logits: Any, p: SamplingParams, generator: Any) -> int:
    """The next token of one sequence: argmax when greedy, else temperature + nucleus sampling."""
    import torch
    if p.temperature <= 0:
        return int(logits.argmax())
    probs = torch.softmax(logits / p.temperature, dim=-1)
    if p.top_p < 1.0:
        sp, si = probs.sort(descending=True)
        # keep the smallest prefix whose mass reaches top_p (the first token always stays)
        drop = (sp.cumsum(-1) - sp) >= p.top_p
        sp[drop] = 0.0
        probs = torch.zeros_like(probs).scatter_(0, si, sp)
    return int(torch.multinomial(probs, 1, generator=generator))


def token_logprob(logp_row: Any, token: int, k: int) -> TokenLogprob:
    top: list[tuple[int, float]] = []
    if k:
        v, i = logp_row.topk(k)
        top = [(int(a), float(b)) for a, b in zip(i, v)]
    return TokenLogprob(token, float(logp_row[token]), top)


class StopChecker:
    """Incremental detokenization with stop strings.

    ``feed(all generated ids)`` -> (stable text, stopped). Text is decoded from all generated ids (so
    multi-token characters come out whole); a trailing U+FFFD (an incomplete UTF-8 sequence) and any
    tail that could still grow into a stop string are held back from streaming, so a stop string never
    leaks to a client, not even split across chunks.
    """

    def __init__(self, tokenizer: Any, stop: Sequence[str]):
        self.tok, self.stop = tokenizer, [s for s in stop if s]
        self.text = ""

    def feed(self, ids: Sequence[int]) -> tuple[str, bool]:
        self.text = self.tok.decode(list(ids), skip_special_tokens=True)
        cut = min((k for k in (self.text.find(s) for s in self.stop) if k != -1), default=-1)
        if cut != -1:
            self.text = self.text[:cut]
            return self.text, True
        return self.text[: len(self.text) - self._hold(self.text)], False

    def _hold(self, text: str) -> int:
        hold = 1 if text.endswith("\ufffd") else 0
        for s in self.stop:
            for k in range(min(len(s) - 1, len(text)), hold, -1):
                if text.endswith(s[:k]):
                    hold = k
                    break
        return hold
