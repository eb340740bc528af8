"""Preference losses on per-sequence log-prob sums: one function per ``train.dpo.loss`` (a dict of choices).

Inputs (tensors of shape ``[pairs]``): policy log-prob sums of chosen/rejected completions ``pc, pr``,
reference sums ``rc, rr`` (None for the reference-free losses) and completion token counts ``nc, nr``.
Each returns per-pair losses plus the implicit rewards used for the metrics.

* sigmoid (DPO, Rafailov et al. 2023): ``-log σ(β[(pc-rc) - (pr-rr)])``, optional label smoothing
  (cDPO: ``-(1-ε) log σ(z) - ε log σ(-z)``);
* ipo (Azar et al. 2023): ``(h - 1/(2β))²`` with ``h`` the same log-ratio difference on length-averaged
  log-probs (as the paper's per-token formulation and TRL do);
* simpo (Meng et al. 2024): reference-free, ``-log σ(β(pc/nc - pr/nr) - γ)``;
* orpo (Hong et al. 2024): reference-free, ``NLL(chosen) - β log σ(log odds(c) - log odds(r))`` with
  ``odds = p / (1 - p)`` of the length-averaged probability.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F


@dataclass
class PrefParams:
    beta: float = 0.1
    label_smoothing: float = 0.0
    simpo_gamma: float = 0.5


def _sigmoid(pc, pr, rc, rr, nc, nr, p: PrefParams):
    z = p.beta * ((pc - rc) - (pr - rr))
    loss = -(1 - p.label_smoothing) * F.logsigmoid(z) - p.label_smoothing * F.logsigmoid(-z)
    return loss, p.beta * (pc - rc), p.beta * (pr - rr)


def _ipo(pc, pr, rc, rr, nc, nr, p: PrefParams):
    h = (pc / nc - rc / nc) - (pr / nr - rr / nr)
    return (h - 1 / (2 * p.beta)) ** 2, p.beta * (pc - rc), p.beta * (pr - rr)


def _simpo(pc, pr, rc, rr, nc, nr, p: PrefParams):
    a, b = p.beta * pc / nc, p.beta * pr / nr
    return -F.logsigmoid(a - b - p.simpo_gamma), a, b


def _orpo(pc, pr, rc, rr, nc, nr, p: PrefParams):
    ac, ar = pc / nc, pr / nr
    # log odds = log p - log(1 - p); log1p(-exp(x)) is the stable log(1 - p) for x < 0
    log_odds = (ac - torch.log1p(-torch.exp(ac).clamp(max=1 - 1e-7))) - \
               (ar - torch.log1p(-torch.exp(ar).clamp(max=1 - 1e-7)))
    return -ac - p.beta * F.logsigmoid(log_odds), p.beta * ac, p.beta * ar


LOSSES: dict[str, Callable] = {"sigmoid": _sigmoid, "ipo": _ipo, "simpo": _simpo, "orpo": _orpo}
#: losses that need no reference model (and therefore no reference cache)
REFERENCE_FREE = {"simpo", "orpo"}


def bradley_terry(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    """Reward-model loss per pair: ``-log σ(r_c - r_r)`` (InstructGPT eq. 1 on one pair)."""
    return -F.logsigmoid(r_chosen - r_rejected)
