"""Confidence intervals that respect how evaluation items are drawn.

A templated task renders each underlying example with several templates: its items are not
independent draws (10 templates of one example are one example seen 10 ways). So intervals come from
a *cluster bootstrap*: resample examples with replacement (seeded), take every item of each drawn
example, recompute the mean; the 95% interval is the 2.5th and 97.5th percentiles of ``n_boot``
resamples. Paired deltas (tuned - base on the same items) resample the same examples for both
models, so the noise the two share cancels. A mean over tasks (a cluster) resamples each task's
examples independently and averages the task means, as the point estimate does.
"""

from __future__ import annotations

from typing import Hashable, Sequence

import numpy as np

N_BOOT = 1000
LEVEL = 0.95


def _groups(groups: Sequence[Hashable]) -> tuple[np.ndarray, int]:
    _, inv = np.unique(np.asarray([str(g) for g in groups]), return_inverse=True)
    return inv, int(inv.max()) + 1 if len(inv) else 0


def _boot_means(values: np.ndarray, inv: np.ndarray, n_groups: int, n_boot: int,
                rng: np.random.Generator) -> np.ndarray:
    """``n_boot`` resampled means of ``values`` (rows: one per resample), resampling groups."""
    sums = np.bincount(inv, weights=values, minlength=n_groups)
    counts = np.bincount(inv, minlength=n_groups).astype(float)
    draws = rng.integers(0, n_groups, size=(n_boot, n_groups))
    # the mean over all items of the drawn examples (an example drawn twice counts twice)
    return sums[draws].sum(1) / np.maximum(counts[draws].sum(1), 1)


def _interval(samples: np.ndarray) -> tuple[float, float]:
    a = (1 - LEVEL) / 2
    lo, hi = np.quantile(samples, [a, 1 - a])
    return float(lo), float(hi)


def bootstrap_ci(values: Sequence[float], groups: Sequence[Hashable] | None = None, n_boot: int = N_BOOT,
                 seed: int = 0) -> tuple[float, float, float]:
    """(mean, lo, hi): the mean of ``values`` and its 95% cluster-bootstrap interval over ``groups``
    (one group per item = the ordinary bootstrap)."""
    v = np.asarray(values, dtype=float)
    if len(v) == 0:
        return float("nan"), float("nan"), float("nan")
    inv, g = _groups(groups if groups is not None else range(len(v)))
    mean = float(v.mean())
    if g < 2:
        return mean, mean, mean
    return (mean, *_interval(_boot_means(v, inv, g, n_boot, np.random.default_rng(seed))))


def paired_bootstrap(a: Sequence[float], b: Sequence[float], groups: Sequence[Hashable] | None = None,
                     n_boot: int = N_BOOT, seed: int = 0) -> tuple[float, float, float]:
    """(mean(b - a), lo, hi): the paired delta of two models scored on the same items."""
    if len(a) != len(b):
        raise ValueError(f"paired bootstrap needs the same items: {len(a)} vs {len(b)}")
    d = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    return bootstrap_ci(d, groups, n_boot, seed)


def mean_of_tasks_ci(tasks: Sequence[tuple[Sequence[float], Sequence[Hashable]]], n_boot: int = N_BOOT,
                     seed: int = 0) -> tuple[float, float, float]:
    """(mean of task means, lo, hi): each task's examples resampled independently, task means averaged.
    Pass per-item deltas to get the interval of a cluster's paired delta."""
    tasks = [(np.asarray(v, dtype=float), g) for v, g in tasks if len(v)]
    if not tasks:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    point = float(np.mean([v.mean() for v, _ in tasks]))
    boots = []
    for v, g in tasks:
        inv, n = _groups(g)
        boots.append(_boot_means(v, inv, n, n_boot, rng) if n >= 2 else np.full(n_boot, v.mean()))
    return (point, *_interval(np.mean(boots, axis=0)))


def verdict(delta: float, lo: float, hi: float, what: str = "held-out accuracy") -> str:
    """One sentence: did ``what`` rise, fall, or stay within noise (the 95% CI of the paired delta)?"""
    ci = f"[95% CI {lo:+.3f}, {hi:+.3f}]"
    if lo > 0:
        return f"{what} rose by {delta:+.3f} {ci}: above noise."
    if hi < 0:
        return f"{what} fell by {delta:+.3f} {ci}: below noise (a real drop)."
    return f"{what} changed by {delta:+.3f} {ci}: within noise (no detectable effect)."
