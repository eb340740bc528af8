"""The RL loss wrapper the loop trains: ``forward(**micro_batch) -> summed loss`` (+ metrics, + value head).

GRPO and RLOO train the clipped surrogate on per-token advantages (GRPO adds ``beta * k3`` to each
token's loss); PPO adds the clipped value loss of its value head (a linear layer on the policy's last
hidden state, InstructGPT's shared-trunk form), weighted ``vf_coef``. With one update per rollout
(``rl.num_iterations`` = 1) the old policy is the current one: GRPO/RLOO take its log-probs from this
forward (detached, ratio exactly 1, as TRL does); PPO stores them at rollout time (they are needed for the
KL reward), and the ratio is then 1 up to rounding (tests/unit/train/test_rl_train.py). With mu > 1
every objective uses the rollout-time log-probs (``old_logp`` in the batch): the passes after the first
see ratio != 1 and clip (tests/unit/train/test_rl_iterations.py).

Dropout is off in RL (the policy ratio and the KL must compare the same function): the wrapper keeps the
LM in eval mode while it trains - gradients flow the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from instructkit.train.rl.advantages import k3
from instructkit.train.rl.losses import AGGREGATE, clipped_policy_loss, clipped_value_loss
from instructkit.train.rl.rollout import token_forward


@dataclass
class LossParams:
    algo: str              # grpo | rloo | ppo
    beta: float
    eps_low: float
    eps_high: float
    agg: str
    vf_coef: float = 0.1
    cliprange_value: float = 0.2
    has_reference: bool = True
    temperature: float = 1.0  # the rollouts' sampling temperature: log-probs are of softmax(z / T)


class Metrics:
    """Sums and counts between two logged steps (reduced over ranks when popped)."""

    def __init__(self) -> None:
        self.acc: dict[str, list[float]] = {}

    def add(self, name: str, total: float, count: float = 1.0) -> None:
        a = self.acc.setdefault(name, [0.0, 0.0])
        a[0] += float(total)
        a[1] += float(count)

    def pop(self, reduce: Callable[[torch.Tensor], torch.Tensor], device: Any = "cpu") -> dict[str, float]:
        """Means since the last pop; one collective for all keys (every rank holds the same keys)."""
        keys = sorted(self.acc)
        if not keys:
            return {}
        t = reduce(torch.tensor([v for k in keys for v in self.acc[k]], dtype=torch.float64, device=device))
        self.acc.clear()
        return {k: float(t[2 * i] / t[2 * i + 1]) if float(t[2 * i + 1]) else 0.0 for i, k in enumerate(keys)}


class RLLoss(nn.Module):
    def __init__(self, lm: nn.Module, params: LossParams, value_head: nn.Module | None = None):
        super().__init__()
        self.lm, self.p, self.value_head = lm, params, value_head
        self.metrics = Metrics()
        self.on_log: Callable[[], None] | None = None  # set by setup: writes the sample table

    def train(self, mode: bool = True) -> "RLLoss":
        super().train(mode)
        self.lm.eval()  # no dropout (see module docstring)
        return self

    def forward(self, **b: Any) -> torch.Tensor:
        p = self.p
        logp, ent, values = token_forward(self.lm, b, self.value_head if p.algo == "ppo" else None,
                                          temperature=p.temperature)
        old = b.get("old_logp")
        old = logp.detach() if old is None else old
        adv = b["adv"]
        loss, ratio, clipped = clipped_policy_loss(logp, old, adv, p.eps_low, p.eps_high)
        kl = k3(logp, b["ref_logp"]) if p.has_reference else None
        if p.algo == "grpo" and p.beta > 0 and kl is not None:
            loss = loss + p.beta * kl
        n = float(logp.numel())
        if p.algo == "ppo":
            vloss, vclip = clipped_value_loss(values, b["old_values"], b["returns"], p.cliprange_value)
            loss = loss + p.vf_coef * vloss
            self.metrics.add("value_loss", float(vloss.detach().sum()), n)
            self.metrics.add("value_clip_frac", float(vclip.float().sum()), n)
        m = self.metrics
        m.add("entropy", float(ent.sum()), n)
        m.add("clip_frac", float(clipped.float().sum()), n)
        m.add("ratio", float(ratio.sum()), n)
        if kl is not None:
            m.add("kl", float(kl.detach().sum()), n)
        return AGGREGATE[p.agg](loss, b["seg"], int(b["n_seqs"]), int(b["max_new_tokens"]))

    def pop_metrics(self, reduce: Callable[[torch.Tensor], torch.Tensor], train: bool = True) -> dict[str, float]:
        if not train:
            return {}
        if self.on_log is not None:
            self.on_log()
        return self.metrics.pop(reduce, next(self.lm.parameters()).device)

    # -- checkpointed with the run (train/checkpoint.py): the value head is not part of the LM's weights
    def objective_state_dict(self) -> dict[str, Any]:
        return {"value_head": self.value_head.state_dict()} if self.value_head is not None else {}

    def load_objective_state_dict(self, state: dict[str, Any]) -> None:
        if self.value_head is not None and "value_head" in state:
            self.value_head.load_state_dict(state["value_head"])


def value_head(lm: nn.Module) -> nn.Module:
    """A scalar head on the last hidden state, zero-initialised (values start at 0: no early bias)."""
    hidden = lm.get_output_embeddings().weight.shape[1]
    head = nn.Linear(hidden, 1)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    return head.to(next(lm.parameters()).device)
