"""Optimizers and learning-rate schedules, chosen from dicts by name."""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterable

import torch

log = logging.getLogger("instructkit.train")


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Decay matrices only: biases and norm weights (1-D) are not decayed."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            # ZeRO-3 loads the model partitioned: p is an empty 1-D placeholder and ds_shape its real shape
            # (by p.ndim every matrix would land in no_decay, undecayed)
            (decay if len(getattr(p, "ds_shape", p.shape)) >= 2 else no_decay).append(p)
    # no empty group: DeepSpeed drops it from the optimizer, and the LR schedule built before (one LR per
    # group) then no longer fits it
    groups = [{"params": decay, "weight_decay": weight_decay}] if decay or not no_decay else []
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def _adamw(groups: Iterable[dict], lr: float, betas: tuple[float, float], eps: float, device_type: str) -> Any:
    # fused updates in place: no per-step temporaries the size of the trained parameters (foreach's
    # cost in peak memory, ~0.5 GB for a fully tuned 135M model) and measured ~8% faster on CPU; the
    # update equals foreach's within fp rounding. foreach where fused refuses the parameters.
    groups = list(groups)
    try:
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, fused=True)
    except (RuntimeError, ValueError) as e:
        log.info("fused AdamW unavailable (%s); using foreach", e)
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps, foreach=True)


def _adafactor(groups: Iterable[dict], lr: float, betas: tuple[float, float], eps: float, device_type: str) -> Any:
    from transformers.optimization import Adafactor

    # Flan 2022 setting: an external (constant) LR, no relative step / warmup-init / parameter scaling
    return Adafactor(groups, lr=lr, relative_step=False, scale_parameter=False, warmup_init=False)


def _paged_adamw(groups: Iterable[dict], lr: float, betas: tuple[float, float], eps: float, device_type: str) -> Any:
    if device_type != "cuda":
        # paged optimizers page state between GPU and CPU memory via CUDA unified memory: nothing to page on CPU
        log.warning("notice: paged_adamw needs CUDA; using torch AdamW on %s", device_type)
        return _adamw(groups, lr, betas, eps, device_type)
    import bitsandbytes as bnb

    return bnb.optim.PagedAdamW(groups, lr=lr, betas=betas, eps=eps)


OPTIMIZERS: dict[str, Callable[..., Any]] = {"adamw": _adamw, "adafactor": _adafactor, "paged_adamw": _paged_adamw}

#: our schedule name -> transformers.get_scheduler name (all with linear warmup)
SCHEDULES: dict[str, str] = {"constant": "constant_with_warmup", "linear": "linear", "cosine": "cosine"}


def build_optimizer(model: torch.nn.Module, name: str, *, lr: float, weight_decay: float,
                    betas: tuple[float, float], eps: float, device_type: str) -> Any:
    return OPTIMIZERS[name](param_groups(model, weight_decay), lr, tuple(betas), eps, device_type)


def build_scheduler(optimizer: Any, name: str, *, warmup_steps: int, total_steps: int) -> Any:
    from transformers import get_scheduler

    return get_scheduler(SCHEDULES[name], optimizer, num_warmup_steps=warmup_steps, num_training_steps=total_steps)


def warmup_steps_for(total_steps: int, warmup_steps: int | None, warmup_ratio: float) -> int:
    return warmup_steps if warmup_steps is not None else int(round(total_steps * warmup_ratio))
