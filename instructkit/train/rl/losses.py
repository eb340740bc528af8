"""Per-token policy and value losses and how they are summed (the loop divides by the step's count).

Every input is a flat tensor with one entry per completion token of the micro-batch (``seg`` says which
completion a token belongs to). The loop normalises a step by ``count_fn`` summed over its micro-batches
and ranks (``train/loop.py``), so each aggregation is a (sum, count) pair:

* ``token`` (DAPO): sum of token losses / completion tokens of the step;
* ``sequence`` (GRPO paper): sum over completions of their mean token loss / completions;
* ``dr_grpo`` (Dr. GRPO): sum of token losses / (completions * max_new_tokens): no length bias.
"""

from __future__ import annotations

from typing import Callable

import torch


def clipped_policy_loss(logp: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor, eps_low: float,
                        eps_high: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PPO's pessimistic surrogate per token: ``-min(rho A, clip(rho, 1-el, 1+eh) A)``.

    Returns ``(loss, ratio, clipped)`` where ``clipped`` marks tokens whose clipped term was chosen."""
    ratio = torch.exp(logp - old_logp)
    unclipped = ratio * adv
    clipped = torch.clamp(ratio, 1 - eps_low, 1 + eps_high) * adv
    loss = -torch.minimum(unclipped, clipped)
    return loss, ratio.detach(), (clipped < unclipped).detach()


def clipped_value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor,
                       clip: float) -> tuple[torch.Tensor, torch.Tensor]:
    """``0.5 * max((V - R)^2, (clip(V, V_old +- c) - R)^2)`` per token, and where the clipped term won."""
    v_clip = old_values + torch.clamp(values - old_values, -clip, clip)
    a, b = (values - returns) ** 2, (v_clip - returns) ** 2
    return 0.5 * torch.maximum(a, b), (b > a).detach()


def _token(per_tok: torch.Tensor, seg: torch.Tensor, n_seq: int, max_len: int) -> torch.Tensor:
    return per_tok.sum()


def _sequence(per_tok: torch.Tensor, seg: torch.Tensor, n_seq: int, max_len: int) -> torch.Tensor:
    sums = torch.zeros(n_seq, dtype=per_tok.dtype, device=per_tok.device).index_add_(0, seg, per_tok)
    counts = torch.zeros(n_seq, dtype=per_tok.dtype, device=per_tok.device).index_add_(0, seg, torch.ones_like(per_tok))
    return (sums / counts.clamp(min=1)).sum()


#: aggregation -> sum of the micro-batch (the matching count is :data:`COUNTS`)
AGGREGATE: dict[str, Callable[..., torch.Tensor]] = {"token": _token, "sequence": _sequence, "dr_grpo": _token}
#: aggregation -> the unit a step's loss is divided by, from a micro-batch
COUNTS: dict[str, Callable[[dict], torch.Tensor]] = {
    "token": lambda b: b["n_tokens"],
    "sequence": lambda b: b["n_seqs"],
    "dr_grpo": lambda b: b["n_seqs"] * b["max_new_tokens"],
}
