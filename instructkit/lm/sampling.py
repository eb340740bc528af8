"""Per-sequence decoding pieces of the engine: sampling parameters and the next-token choice.

Kept apart from the scheduler (``engine.py``, ``batch.py``) so each piece reads top to bottom and is tested
alone. Everything runs where the logits are (the model's device): a step copies to the CPU only the chosen
token ids and, for rows that asked for them, the chosen and top-k log-probs - never a full-vocabulary row.
Text handling (incremental detokenization, stop strings) is in ``detok.py``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Sequence

from instructkit.lm.detok import StopChecker  # noqa: F401  (re-exported: callers import it from here)

#: torch.Generator seeds are unsigned 64-bit: derived per-choice seeds wrap around
_SEED_MOD = 1 << 64


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

    @property
    def plain(self) -> bool:
        """Greedy with nothing to adjust: the row's token is the batch argmax."""
        return self.temperature <= 0 and not (self.logit_bias or self.presence_penalty or self.frequency_penalty)


@dataclass
class TokenLogprob:
    token_id: int
    logprob: float | None      # None: the first prompt token (nothing before it to predict it from)
    top: list[tuple[int, float]] = field(default_factory=list)


def derive_seed(seed: int | None, index: int) -> int | None:
    """Choice ``index``'s seed (``seed + index``, wrapped into torch's unsigned 64-bit range)."""
    return None if seed is None else (int(seed) + index) % _SEED_MOD


def make_generator(seed: int | None, device: Any = "cpu") -> Any:
    import torch
    g = torch.Generator(device=device)
    g.manual_seed(seed % _SEED_MOD if seed is not None else int.from_bytes(os.urandom(8), "little") >> 1)
    return g


def adjust_logits(logits: Any, p: SamplingParams, generated: Sequence[int]) -> Any:
    """OpenAI's logit_bias, presence and frequency penalties on one row (fp32, on the row's device)."""
    import torch
    dev = logits.device
    if p.logit_bias:
        ids = torch.tensor(list(p.logit_bias), dtype=torch.long, device=dev)
        logits = logits.clone()
        logits[ids] += torch.tensor(list(p.logit_bias.values()), dtype=logits.dtype, device=dev)
    if (p.presence_penalty or p.frequency_penalty) and generated:
        ids, counts = torch.tensor(list(generated), dtype=torch.long, device=dev).unique(return_counts=True)
        logits = logits.clone()
        logits[ids] -= p.presence_penalty + p.frequency_penalty * counts.to(logits.dtype)
    return logits


def choose(logits: Any, p: SamplingParams, generator: Any) -> Any:
    """The next token of one sequence as a 0-d tensor on the logits' device: argmax when greedy, else
    temperature + nucleus sampling."""
    import torch
    if p.temperature <= 0:
        return logits.argmax()
    probs = torch.softmax(logits / p.temperature, dim=-1)
    if p.top_p < 1.0:
        sp, si = probs.sort(descending=True)
        # keep the smallest prefix whose mass reaches top_p (the first token always stays)
        drop = (sp.cumsum(-1) - sp) >= p.top_p
        sp[drop] = 0.0
        probs = torch.zeros_like(probs).scatter_(0, si, sp)
    return torch.multinomial(probs, 1, generator=generator)[0]


def next_tokens(logits: Any, params: Sequence[SamplingParams], histories: Sequence[Sequence[int]],
                generators: Sequence[Any]) -> tuple[list[int], list[TokenLogprob | None]]:
    """One token per row of ``logits`` ([B, V] fp32 on the model's device) and, for rows whose params ask
    for logprobs, its :class:`TokenLogprob` (raw model distribution). One device->CPU copy of B ids, plus
    the gathered log-probs of the rows that want them."""
    import torch

    tokens = logits.argmax(-1)
    special = [b for b, p in enumerate(params) if not p.plain]
    if special:
        tokens = tokens.clone()
        for b in special:
            p = params[b]
            tokens[b] = choose(adjust_logits(logits[b], p, histories[b]), p, generators[b])
    want = [b for b, p in enumerate(params) if p.logprobs]
    lps: list[TokenLogprob | None] = [None] * len(params)
    if want:
        idx = torch.tensor(want, device=logits.device)
        logp = torch.log_softmax(logits.index_select(0, idx), dim=-1)
        chosen = logp.gather(1, tokens.index_select(0, idx)[:, None])[:, 0].tolist()
        k = max(params[b].top_logprobs for b in want)
        top_v, top_i = (logp.topk(k, dim=-1) if k else (logp[:, :0], logp[:, :0].long()))
        top_v, top_i = top_v.tolist(), top_i.tolist()
        for j, b in enumerate(want):
            kb = params[b].top_logprobs
            lps[b] = TokenLogprob(0, chosen[j], list(zip(top_i[j][:kb], top_v[j][:kb])))
    out = tokens.tolist()
    for b, lp in enumerate(lps):
        if lp is not None:
            lp.token_id = out[b]
    return out, lps


def token_logprob(logp_row: Any, token: int, k: int) -> TokenLogprob:
    top: list[tuple[int, float]] = []
    if k:
        v, i = logp_row.topk(k)
        top = [(int(a), float(b)) for a, b in zip(i, v)]
    return TokenLogprob(token, float(logp_row[token]), top)
