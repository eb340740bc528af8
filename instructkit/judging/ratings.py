"""Ratings from pairwise battles: online Elo and Bradley-Terry, with bootstrap confidence intervals.

Battles are ``{"model_a", "model_b", "winner": "model_a"|"model_b"|"tie"|"tie (bothbad)"}`` (Chatbot
Arena's format). Both ratings use the Elo scale: base 10, scale 400, initial/anchor 1000.

* Elo is Chatbot Arena's online update (K=4). It depends on the battle order, so the reported value
  is the median over shuffled orders.
* Bradley-Terry is the order-free maximum-likelihood fit (ties = half a win and half a loss), by
  Newton's method on the log-likelihood with a tiny ridge term: without it a model that never lost
  has an infinite MLE, with it that model gets a large finite rating and the fit always converges.
  Ratings are ``scale/ln(base)`` per logit, shifted so their mean (or the ``anchor`` model) is 1000.
* Confidence intervals: resample battles with replacement, refit, take percentiles 2.5/97.5.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from instructkit.errors import DataError
from instructkit.jsonl import iter_jsonl

#: winner label -> score of model_a
WINNERS = {"model_a": 1.0, "model_b": 0.0, "tie": 0.5, "tie (bothbad)": 0.5}


def load_battles(path: str | Path) -> list[dict[str, Any]]:
    out = []
    for n, rec in iter_jsonl(path, objects=True):
        for k in ("model_a", "model_b"):
            if not isinstance(rec.get(k), str) or not rec[k]:
                raise DataError("missing model name", path=str(path), line=n, field=k, reason="missing_field")
        if rec.get("winner") not in WINNERS:
            raise DataError(f"winner must be one of {', '.join(WINNERS)}, got {rec.get('winner')!r}",
                            path=str(path), line=n, field="winner", reason="invalid_value")
        if rec["model_a"] == rec["model_b"]:
            raise DataError("a model cannot battle itself", path=str(path), line=n, field="model_b",
                            reason="invalid_value")
        out.append(rec)
    if not out:
        raise DataError("no battles", path=str(path), reason="empty_file")
    return out


@dataclass
class Encoded:
    models: list[str]
    a: np.ndarray       # index of model_a per battle
    b: np.ndarray
    s: np.ndarray       # score of model_a: 1, 0.5, 0


def encode(battles: Sequence[dict[str, Any]]) -> Encoded:
    models = sorted({m for x in battles for m in (x["model_a"], x["model_b"])})
    idx = {m: i for i, m in enumerate(models)}
    a = np.array([idx[x["model_a"]] for x in battles], dtype=np.int64)
    b = np.array([idx[x["model_b"]] for x in battles], dtype=np.int64)
    s = np.array([WINNERS[x["winner"]] for x in battles], dtype=np.float64)
    return Encoded(models, a, b, s)


# -- Elo ------------------------------------------------------------------------------------------------
def online_elo(a: np.ndarray, b: np.ndarray, s: np.ndarray, n_models: int, *, k: float = 4.0,
               scale: float = 400.0, base: float = 10.0, init: float = 1000.0) -> np.ndarray:
    """Sequential Elo over battle orders given row-wise: ``a, b, s`` of shape (R, T) -> ratings (R, M).

    Rows are independent orders (permutations or bootstrap samples) updated together, one battle
    column at a time, so R orders cost T numpy steps instead of R*T Python steps.
    """
    a, b, s = np.atleast_2d(a), np.atleast_2d(b), np.atleast_2d(s)
    r = np.full((a.shape[0], n_models), init, dtype=np.float64)
    rows = np.arange(a.shape[0])
    for t in range(a.shape[1]):
        ia, ib = a[:, t], b[:, t]
        ea = 1.0 / (1.0 + base ** ((r[rows, ib] - r[rows, ia]) / scale))
        delta = k * (s[:, t] - ea)
        r[rows, ia] += delta
        r[rows, ib] -= delta
    return r


def elo_ratings(enc: Encoded, *, n_perm: int = 100, seed: int = 0, **elo_kw: float) -> np.ndarray:
    """Median Elo over ``n_perm`` shuffled battle orders (Elo depends on order; the median does not)."""
    rng = np.random.default_rng(seed)
    order = np.stack([rng.permutation(len(enc.s)) for _ in range(n_perm)])
    return np.median(online_elo(enc.a[order], enc.b[order], enc.s[order], len(enc.models), **elo_kw), axis=0)


# -- Bradley-Terry --------------------------------------------------------------------------------------
def _win_matrix(a: np.ndarray, b: np.ndarray, s: np.ndarray, m: int) -> np.ndarray:
    """``W[i, j]`` = points of i against j (win 1, tie 0.5)."""
    w = np.zeros((m, m))
    np.add.at(w, (a, b), s)
    np.add.at(w, (b, a), 1.0 - s)
    return w


def bt_logits(w: np.ndarray, *, l2: float = 1e-4, tol: float = 1e-10, max_iter: int = 100) -> np.ndarray:
    """MLE of Bradley-Terry strengths (logits) from a win matrix, Newton with a ridge ``l2``."""
    m = w.shape[0]
    n = w + w.T

    def objective(r: np.ndarray) -> float:
        d = r[:, None] - r[None, :]
        return float((w * -np.logaddexp(0.0, -d)).sum() - 0.5 * l2 * r @ r)

    r = np.zeros(m)
    f = objective(r)
    for _ in range(max_iter):
        p = 1.0 / (1.0 + np.exp(r[None, :] - r[:, None]))   # p[i, j] = P(i beats j)
        grad = (w - n * p).sum(axis=1) - l2 * r
        v = n * p * (1.0 - p)
        hess = v - np.diag(v.sum(axis=1)) - l2 * np.eye(m)
        # least squares, not solve: with l2=0 the Hessian is singular along "shift every rating"
        step = -np.linalg.lstsq(hess, grad, rcond=None)[0]
        # backtracking: a full Newton step can overshoot when a model (nearly) never loses
        t = 1.0
        while t > 1e-6 and objective(r + t * step) < f - 1e-12:
            t *= 0.5
        r = r + t * step
        f = objective(r)
        if np.max(np.abs(t * step)) < tol:
            break
    return r


def bt_ratings(enc: Encoded, *, scale: float = 400.0, base: float = 10.0, init: float = 1000.0,
               anchor: str | None = None, l2: float = 1e-4) -> np.ndarray:
    r = bt_logits(_win_matrix(enc.a, enc.b, enc.s, len(enc.models)), l2=l2)
    return _to_elo_scale(r, enc.models, scale, base, init, anchor)


def _to_elo_scale(r: np.ndarray, models: list[str], scale: float, base: float, init: float,
                  anchor: str | None) -> np.ndarray:
    elo = r * scale / math.log(base)
    ref = elo[..., models.index(anchor)] if anchor else elo.mean(axis=-1)
    return elo - np.expand_dims(ref, -1) + init


# -- bootstrap and leaderboard --------------------------------------------------------------------------
def bootstrap(enc: Encoded, *, rounds: int = 200, seed: int = 0, anchor: str | None = None,
              l2: float = 1e-4) -> dict[str, np.ndarray]:
    """Ratings of ``rounds`` resamples of the battles: ``{"bt": (R, M), "elo": (R, M)}``."""
    rng = np.random.default_rng(seed)
    m, t = len(enc.models), len(enc.s)
    idx = rng.integers(0, t, size=(rounds, t))
    bt = np.stack([bt_logits(_win_matrix(enc.a[i], enc.b[i], enc.s[i], m), l2=l2) for i in idx])
    return {"bt": _to_elo_scale(bt, enc.models, 400.0, 10.0, 1000.0, anchor),
            "elo": online_elo(enc.a[idx], enc.b[idx], enc.s[idx], m)}


def win_rate_matrix(battles: Sequence[dict[str, Any]]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """``(models, rate, n)``: ``rate[i, j]`` = points of i against j / battles between them (win 1, tie 0.5;
    NaN where they never met), ``n[i, j]`` = those battles. Rows and columns in :func:`encode`'s order."""
    enc = encode(battles)
    m = len(enc.models)
    w = _win_matrix(enc.a, enc.b, enc.s, m)
    n = np.zeros((m, m))
    np.add.at(n, (enc.a, enc.b), 1.0)
    n = n + n.T
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(n > 0, w / np.where(n > 0, n, 1.0), np.nan)
    return enc.models, rate, n


@dataclass
class Row:
    model: str
    rating: float          # Bradley-Terry (MLE on all battles)
    ci_low: float
    ci_high: float
    elo: float             # median online Elo over permutations
    elo_ci_low: float
    elo_ci_high: float
    battles: int
    wins: float
    ties: float
    losses: float
    win_rate: float        # (wins + ties/2) / battles
    rank: int = 0          # 1 + models whose CI lies entirely above this one's


def leaderboard(battles: Sequence[dict[str, Any]], *, rounds: int = 200, n_perm: int = 100, seed: int = 0,
                anchor: str | None = None) -> list[Row]:
    enc = encode(battles)
    if anchor is not None and anchor not in enc.models:
        raise DataError(f"anchor model {anchor!r} is in no battle (models: {', '.join(enc.models)})",
                        field="anchor", reason="invalid_value")
    bt, elo = bt_ratings(enc, anchor=anchor), elo_ratings(enc, n_perm=n_perm, seed=seed)
    boot = bootstrap(enc, rounds=rounds, seed=seed, anchor=anchor)
    lo, hi = np.percentile(boot["bt"], [2.5, 97.5], axis=0)
    elo_lo, elo_hi = np.percentile(boot["elo"], [2.5, 97.5], axis=0)
    rows = []
    for i, mdl in enumerate(enc.models):
        as_a, as_b = enc.a == i, enc.b == i
        pts = np.concatenate([enc.s[as_a], 1.0 - enc.s[as_b]])
        rows.append(Row(mdl, float(bt[i]), float(lo[i]), float(hi[i]), float(elo[i]), float(elo_lo[i]),
                        float(elo_hi[i]), len(pts), float((pts == 1).sum()), float((pts == 0.5).sum()),
                        float((pts == 0).sum()), float(pts.mean()) if len(pts) else float("nan")))
    rows.sort(key=lambda r: -r.rating)
    for r in rows:
        r.rank = 1 + sum(o.ci_low > r.ci_high for o in rows)
    return rows


def to_markdown(rows: Sequence[Row]) -> str:
    head = ("| rank | model | Bradley-Terry (95% CI) | Elo (95% CI) | battles | W / T / L | win rate |\n"
            "|---:|---|---|---|---:|---|---:|\n")
    return head + "".join(
        f"| {r.rank} | {r.model} | {r.rating:.0f} ({r.ci_low:.0f}, {r.ci_high:.0f}) | "
        f"{r.elo:.0f} ({r.elo_ci_low:.0f}, {r.elo_ci_high:.0f}) | {r.battles} | "
        f"{r.wins:g} / {r.ties:g} / {r.losses:g} | {r.win_rate:.3f} |\n" for r in rows)


def rich_table(rows: Sequence[Row], title: str = "leaderboard") -> Any:
    from rich.table import Table
    t = Table(title=title)
    for c in ("rank", "model", "BT (95% CI)", "Elo (95% CI)", "battles", "W/T/L", "win rate"):
        t.add_column(c, justify="left" if c == "model" else "right")
    for r in rows:
        t.add_row(str(r.rank), r.model, f"{r.rating:.0f} ({r.ci_low:.0f}, {r.ci_high:.0f})",
                  f"{r.elo:.0f} ({r.elo_ci_low:.0f}, {r.elo_ci_high:.0f})", str(r.battles),
                  f"{r.wins:g}/{r.ties:g}/{r.losses:g}", f"{r.win_rate:.3f}")
    return t


def plot(rows: Sequence[Row], path: str | Path, title: str = "Bradley-Terry ratings (95% bootstrap CI)") -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(rows)[::-1]  # best on top
    y = np.arange(len(rows))
    x = np.array([r.rating for r in rows])
    err = np.array([[r.rating - r.ci_low for r in rows], [r.ci_high - r.rating for r in rows]])
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.5))
    ax.errorbar(x, y, xerr=np.clip(err, 0, None), fmt="o", capsize=4)
    ax.set_yticks(y, [r.model for r in rows])
    ax.set_xlabel("rating (Elo scale)")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)


def write_leaderboard(battles: Sequence[dict[str, Any]], out: str | Path, **kw: Any) -> list[Row]:
    """``ratings.json``, ``leaderboard.md`` and ``leaderboard.png`` in ``out``."""
    rows = leaderboard(battles, **kw)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ratings.json").write_text(json.dumps([asdict(r) for r in rows], indent=2))
    (out / "leaderboard.md").write_text(to_markdown(rows))
    plot(rows, out / "leaderboard.png")
    return rows
