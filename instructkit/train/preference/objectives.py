"""The preference objectives the loop trains: module wrappers whose ``forward(batch)`` returns the SUM of
per-pair losses (the loop divides by the pairs of the whole optimizer step, as it divides SFT losses by
trained tokens), plus the metrics they accumulate between two log steps.

``build_dpo`` makes the DPO-family wrapper; which objective runs is chosen in
:data:`instructkit.train.preference.setup.OBJECTIVES`.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import torch
from torch import nn

from instructkit.train.preference.batches import sequence_logprobs
from instructkit.train.preference.losses import LOSSES, PrefParams

log = logging.getLogger("instructkit.train")


class PairMetrics(nn.Module):
    """Running sums of per-pair metrics, kept apart for training and evaluation; popped at log time."""

    KEYS: tuple[str, ...] = ()

    def __init__(self) -> None:
        super().__init__()
        self._sums: dict[bool, torch.Tensor] = {}

    def _add(self, values: dict[str, torch.Tensor]) -> None:
        first = values[self.KEYS[0]]
        row = torch.stack([values[k].detach().float().sum() for k in self.KEYS]
                          + [torch.tensor(float(first.numel()), device=first.device)])
        prev = self._sums.get(self.training)
        self._sums[self.training] = row if prev is None else prev + row

    def pop_metrics(self, reduce: Callable[[torch.Tensor], torch.Tensor], train: bool = True) -> dict[str, float]:
        """Means over the pairs seen since the last pop (all ranks: ``reduce`` sums across processes)."""
        s = self._sums.pop(train, None)
        if s is None:
            s = torch.zeros(len(self.KEYS) + 1, device=next(self.parameters()).device)
        s = reduce(s)
        n = max(float(s[-1]), 1.0)
        out = {k: float(v) / n for k, v in zip(self.KEYS, s[:-1])}
        if train:
            self.on_train_metrics(out)
        return out

    def on_train_metrics(self, metrics: dict[str, float]) -> None:
        pass


class DPOLoss(PairMetrics):
    """Policy sums from one forward over the packed chosen+rejected rows; reference sums from the batch."""

    KEYS = ("logps_chosen", "logps_rejected", "rewards_chosen", "rewards_rejected", "reward_margin",
            "reward_accuracy", "kl_proxy")

    def __init__(self, lm: nn.Module, loss: str, params: PrefParams, chunk: int = 4096, falling_window: int = 5):
        super().__init__()
        self.lm, self.loss, self.params, self.chunk = lm, loss, params, chunk
        self.falling_window = falling_window
        self._chosen: list[float] = []
        self.warned = False

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor, position_ids: torch.Tensor,
                seg: torch.Tensor, ref: torch.Tensor, n_pairs: torch.Tensor, **_: Any) -> torch.Tensor:
        batch = {"input_ids": input_ids, "labels": labels, "position_ids": position_ids, "seg": seg,
                 "n_pairs": n_pairs}
        sums, counts = sequence_logprobs(self.lm, batch, self.chunk)
        pc, pr, nc, nr = sums[0::2], sums[1::2], counts[0::2], counts[1::2]
        rc, rr = ref[:, 0].to(pc), ref[:, 1].to(pr)
        losses, wc, wr = LOSSES[self.loss](pc, pr, rc, rr, nc, nr, self.params)
        self._add({"logps_chosen": pc, "logps_rejected": pr, "rewards_chosen": wc, "rewards_rejected": wr,
                   "reward_margin": wc - wr, "reward_accuracy": (wc > wr).float(),
                   # per-token estimate of KL(reference || policy) on the pairs' completions
                   "kl_proxy": ((rc - pc) / nc + (rr - pr) / nr) / 2})
        return losses.sum()

    def on_train_metrics(self, m: dict[str, float]) -> None:
        """Warn once when the chosen log-prob has fallen at every one of the last N log steps (trl#800)."""
        self._chosen.append(m["logps_chosen"])
        last = self._chosen[-(self.falling_window + 1):]
        if (not self.warned and self.falling_window and len(last) == self.falling_window + 1
                and all(b < a for a, b in zip(last, last[1:]))):
            self.warned = True
            log.warning("warning: the chosen log-prob fell at each of the last %d log steps (%.2f -> %.2f): the "
                        "'both fall' failure - the margin grows by pushing both answers down. Consider a lower "
                        "lr or a larger beta, SFT on the chosen answers first, or train.dpo.loss=ipo/orpo.",
                        self.falling_window, last[0], last[-1])


def build_dpo(lm: nn.Module, dpo: Any, chunk: int) -> DPOLoss:
    r = dpo.resolved()  # unset beta / gamma: the loss's own defaults (train/config.py)
    return DPOLoss(lm, dpo.loss, PrefParams(r["beta"], dpo.label_smoothing, r["simpo_gamma"]), chunk,
                   dpo.falling_chosen_window)
