"""Rollouts with the policy's live weights, and the tensors one micro-batch of them trains on.

Sampling goes through the decode engine (:class:`instructkit.lm.engine.Engine`) built on the policy
module itself, no copy: a LoRA policy is a peft model and the engine runs its live (active) adapter
with plain forwards; the G completions of a prompt are one request with ``n=G``, so
the prompt is prefilled once and its cache rows copied. Every completion's sampling generator is seeded
from (run seed, step, position), so a resumed run draws exactly what the uninterrupted one drew.

Token layout of a micro-batch: prompt + completion per row, right-padded; ``labels`` hold the next
token at every position that predicts a completion token (-100 elsewhere). Only those positions reach
the LM head; per-token tensors (log-probs, advantages, reference log-probs, values) are flat, in
row-major order of the kept positions, with ``seg`` naming the completion each token belongs to.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

IGNORE = -100


@dataclass
class Rollout:
    prompt_index: int       # index into the run's prompt list
    prompt_ids: list[int]
    completion_ids: list[int]
    text: str
    finish_reason: str


def step_seed(seed: int, step: int) -> int:
    """Base seed of a step's sampling (completion k of the step uses base + k)."""
    return (seed * 1_000_003 + step * 65_537) % (2 ** 62)


@contextlib.contextmanager
def reference_mode(lm: Any, ref: Any) -> Any:
    """The reference policy: a frozen copy (full fine-tuning) or the same model with its adapter off."""
    if ref is not None:
        yield ref
    else:
        with lm.disable_adapter():
            yield lm


def sample(lm: Any, tokenizer: Any, prompts: Sequence[tuple[int, list[int]]], *, g: int, max_new_tokens: int,
           temperature: float, top_p: float, seed: int | None, batch_size: int) -> list[Rollout]:
    """G completions of each ``(prompt index, prompt ids)``; returned prompt by prompt, G consecutive.
    ``seed=None`` with ``temperature=0`` is greedy (held-out scoring)."""
    from instructkit.lm.engine import Engine
    from instructkit.lm.sampling import SamplingParams

    was_training = lm.training
    # every row runs the policy's active adapter, live: plain forwards, no per-row adapter_names (peft's
    # mixed batches refuse DoRA and cost a split per layer); inside disable_adapter() that is the base
    eng = Engine(lm, tokenizer, max_batch_size=batch_size, max_queue=max(256, len(prompts) * g), live_adapter=True)
    items = [(ids, SamplingParams(max_tokens=max_new_tokens, temperature=temperature, top_p=top_p, n=g,
                                  seed=None if seed is None else seed + k * g))
             for k, (_, ids) in enumerate(prompts)]
    try:
        outs = eng.generate_many(items)
    finally:
        lm.train(was_training)
    return [Rollout(pi, list(ids), list(c.token_ids), c.text, c.finish_reason)
            for (pi, ids), o in zip(prompts, outs) for c in o.outputs]


def build_batch(rollouts: Sequence[Rollout], pad_id: int, max_new_tokens: int) -> dict[str, Any]:
    """Right-padded rows of prompt + completion; labels on completion tokens only."""
    seqs = [r.prompt_ids + r.completion_ids for r in rollouts]
    T = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), T), dtype=torch.long)
    labels = torch.full((len(seqs), T), IGNORE, dtype=torch.long)
    seg = []
    for b, (r, s) in enumerate(zip(rollouts, seqs)):
        ids[b, :len(s)] = torch.tensor(s)
        mask[b, :len(s)] = 1
        p, c = len(r.prompt_ids), len(r.completion_ids)
        if c:
            labels[b, p - 1:p - 1 + c] = torch.tensor(r.completion_ids)
        seg += [b] * c
    n_tok = len(seg)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels, "seg": torch.tensor(seg, dtype=torch.long),
            "n_tokens": torch.tensor(n_tok), "n_seqs": torch.tensor(len(seqs)),
            "max_new_tokens": torch.tensor(max_new_tokens), "num_tokens": torch.tensor(int(mask.sum()))}


def _head_stats(head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor,
                temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    logits = head(hidden).float() / temperature
    logp_all = F.log_softmax(logits, dim=-1)
    lp = logp_all.gather(-1, targets[:, None])[:, 0]
    with torch.no_grad():
        ent = -(logp_all.exp() * logp_all).sum(-1)
    return lp, ent


def token_forward(lm: Any, batch: dict[str, Any], value_head: nn.Module | None = None,
                  chunk: int = 1024, temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``(log-probs, entropies, values or None)`` of the completion tokens, flat. The LM head and the
    log-softmax run in chunks recomputed in backward: fp32 logits of all positions are never held.
    ``temperature``: the rollouts' sampling temperature. The completions were drawn from softmax(z / T),
    so the policy gradient, the ratio and the KL must use that distribution (TRL and verl divide the
    logits by T too); raw logits would give the gradient of a policy that did not sample them."""
    from torch.utils.checkpoint import checkpoint

    out = lm.get_decoder()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
    keep = batch["labels"] != IGNORE
    hidden, targets = out.last_hidden_state[keep], batch["labels"][keep]
    head = lm.get_output_embeddings()
    t = temperature if temperature > 0 else 1.0  # greedy rollouts: the raw distribution
    parts = [(checkpoint(_head_stats, head, hidden[s:s + chunk], targets[s:s + chunk], t, use_reentrant=False)
              if torch.is_grad_enabled() else _head_stats(head, hidden[s:s + chunk], targets[s:s + chunk], t))
             for s in range(0, max(hidden.shape[0], 1), chunk)]
    lp = torch.cat([p[0] for p in parts])
    ent = torch.cat([p[1] for p in parts])
    values = value_head(hidden.to(value_head.weight.dtype))[:, 0].float() if value_head is not None else None
    return lp, ent, values


@torch.no_grad()
def rollout_logprobs(lm: Any, batch: dict[str, Any], value_head: nn.Module | None = None,
                     temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs (and values) of the sampled tokens under the rollout policy, no gradient."""
    lp, _, v = token_forward(lm, batch, value_head, temperature=temperature)
    return lp, v
