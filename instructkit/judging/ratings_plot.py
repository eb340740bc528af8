"""The win-rate matrix as a heat map (the arena's leaderboard shows it beside the ratings)."""

from __future__ import annotations

from pathlib import Path
from typing import IO, Any, Sequence

import numpy as np

from instructkit.judging.ratings import win_rate_matrix


def plot_win_matrix(battles: Sequence[dict[str, Any]], path: str | Path | IO[bytes],
                    order: Sequence[str] | None = None, title: str = "win rate of row against column") -> Any:
    """Heat map of :func:`win_rate_matrix` (ties count half), rows/columns in ``order`` (e.g. by rating)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models, rate, n = win_rate_matrix(battles)
    names = [m for m in (order or []) if m in models]
    idx = [models.index(m) for m in names + [m for m in models if m not in names]]
    rate, n = rate[np.ix_(idx, idx)], n[np.ix_(idx, idx)]
    names = [models[i] for i in idx]
    k = len(names)
    fig, ax = plt.subplots(figsize=(1.1 * k + 2.6, 0.9 * k + 1.8))
    im = ax.imshow(np.ma.masked_invalid(rate), cmap="RdBu", vmin=0.0, vmax=1.0)
    for i in range(k):
        for j in range(k):
            if n[i, j]:
                ax.text(j, i, f"{rate[i, j]:.2f}\n({n[i, j]:.0f})", ha="center", va="center", fontsize=8,
                        color="white" if abs(rate[i, j] - 0.5) > 0.3 else "black")
    ax.set_xticks(range(k), names, rotation=30, ha="right")
    ax.set_yticks(range(k), names)
    ax.set_xlabel("opponent")
    ax.set_title(title + " (battles)", fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    fig.tight_layout()
    fig.savefig(path, dpi=110, format="png")
    plt.close(fig)
    return path
