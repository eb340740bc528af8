"""Advantages and the KL estimator, on plain tensors (hand-checkable: tests/unit/train/test_rl_math.py).

* GRPO (Shao et al. 2024): ``A_i = (r_i - mean_g) / (std_g + eps)`` over the G completions of a prompt;
  Dr. GRPO (Liu et al. 2025) drops the division by the std (``scale=False``). The std is the unbiased one
  (torch's default), as TRL computes it.
* RLOO (Ahmadian et al. 2024): ``A_i = r_i - mean_{j != i} r_j`` (leave-one-out baseline).
* PPO (InstructGPT, Ouyang et al. 2022, after Stiennon et al. 2020): per-token rewards
  ``-beta * (log pi - log pi_ref)`` with the scalar score added on the last token, GAE over the value
  head's estimates (Schulman et al. 2016), returns = advantages + values.
* KL: Schulman's k3 estimator ``exp(ref - logp) - (ref - logp) - 1`` (unbiased, always >= 0).
"""

from __future__ import annotations

from typing import Sequence

import torch


def grpo_advantages(rewards: torch.Tensor, scale: bool = True, eps: float = 1e-4) -> torch.Tensor:
    """``rewards [prompts, G]`` -> advantages of the same shape (group-normalised)."""
    centred = rewards - rewards.mean(dim=1, keepdim=True)
    if not scale:
        return centred
    std = rewards.std(dim=1, keepdim=True) if rewards.shape[1] > 1 else torch.zeros_like(rewards[:, :1])
    return centred / (std + eps)


def rloo_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """``rewards [prompts, G]`` -> ``r_i - mean of the other G - 1`` (needs G >= 2)."""
    g = rewards.shape[1]
    if g < 2:
        raise ValueError("RLOO needs at least 2 completions per prompt (train.rl.num_generations >= 2)")
    baseline = (rewards.sum(dim=1, keepdim=True) - rewards) / (g - 1)
    return rewards - baseline


def zero_variance_share(rewards: torch.Tensor) -> float:
    """Share of prompts whose G rewards are all equal (they carry no GRPO/RLOO signal)."""
    return float((rewards.max(dim=1).values == rewards.min(dim=1).values).float().mean())


def k3(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token KL(pi || ref) estimate on samples from pi (k3): 0 where the two agree."""
    d = ref_logp - logp
    return torch.exp(d) - d - 1


def ppo_token_rewards(score: float, logp: torch.Tensor, ref_logp: torch.Tensor, beta: float) -> torch.Tensor:
    """InstructGPT's per-token reward of one completion: ``-beta * (logp - ref)``, score on the last token."""
    r = -beta * (logp - ref_logp)
    r[-1] += score
    return r


def gae(rewards: torch.Tensor, values: torch.Tensor, gamma: float, lam: float) -> tuple[torch.Tensor, torch.Tensor]:
    """GAE of one completion (1-D tensors, one entry per token; the state after the last token is terminal).

    Returns ``(advantages, returns)`` with ``returns = advantages + values``."""
    n = rewards.shape[0]
    adv = torch.zeros_like(rewards)
    last = 0.0
    for t in reversed(range(n)):
        nxt = values[t + 1] if t + 1 < n else 0.0
        delta = rewards[t] + gamma * nxt - values[t]
        last = delta + gamma * lam * last
        adv[t] = last
    return adv, adv + values


def whiten(x: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Zero mean, unit variance (PPO's advantage normalisation over the step's tokens)."""
    if x.numel() < 2:
        return x - x.mean()
    return (x - x.mean()) / (x.std() + eps)


def group_rewards(flat: Sequence[float], g: int) -> torch.Tensor:
    """Completions in prompt order (G consecutive per prompt) -> ``[prompts, G]``."""
    return torch.tensor(list(flat), dtype=torch.float32).view(-1, g)
