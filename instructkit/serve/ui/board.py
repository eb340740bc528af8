"""The arena's leaderboard: the votes ranked by the project's ratings code (``instructkit.judging``), the same
function and defaults as ``instructkit eval leaderboard``, so the page and the CLI agree on the same file.

Bradley-Terry and Elo with bootstrap 95% CIs, vote counts and W/T/L per model; an LLM judge's pairwise
battles (``eval judge --mode pairwise`` -> ``battles.jsonl``), when given, are rated separately and shown
as their own column, never mixed with human votes. Results are cached per vote count.
"""

from __future__ import annotations

import io
import threading
from dataclasses import asdict
from typing import Any, Optional, Sequence

from instructkit.judging.ratings import leaderboard
from instructkit.judging.ratings_plot import plot_win_matrix


class Board:
    def __init__(self, votes: Any, judge_battles: Optional[Sequence[dict[str, Any]]] = None, *,
                 rounds: int = 1000, n_perm: int = 100, seed: int = 0):
        self.votes, self.rounds, self.n_perm, self.seed = votes, rounds, n_perm, seed
        self.judge = None
        if judge_battles:
            self.judge = {r.model: {"rating": r.rating, "ci_low": r.ci_low, "ci_high": r.ci_high,
                                    "battles": r.battles}
                          for r in leaderboard(judge_battles, rounds=rounds, n_perm=n_perm, seed=seed)}
        self._lock = threading.Lock()
        self._table: tuple[int, dict[str, Any]] = (-1, {})
        self._png: tuple[int, bytes] = (-1, b"")

    def table(self) -> dict[str, Any]:
        """``{"votes", "rows": [Row as dict + "judge"], "judge": bool}`` (runs in a worker thread)."""
        with self._lock:
            battles = list(self.votes.records)
            if self._table[0] == len(battles):
                return self._table[1]
            rows = [asdict(r) for r in leaderboard(battles, rounds=self.rounds, n_perm=self.n_perm,
                                                   seed=self.seed)] if battles else []
            for r in rows:
                r["judge"] = (self.judge or {}).get(r["model"])
            out = {"votes": len(battles), "rows": rows, "judge": self.judge is not None,
                   "bootstrap": self.rounds}
            self._table = (len(battles), out)
            return out

    def win_matrix_png(self) -> Optional[bytes]:
        order = [r["model"] for r in self.table()["rows"]]
        with self._lock:
            battles = list(self.votes.records)
            if not battles:
                return None
            if self._png[0] != len(battles):
                buf = io.BytesIO()
                plot_win_matrix(battles, buf, order=order or None, title="arena votes: win rate of row vs column")
                self._png = (len(battles), buf.getvalue())
            return self._png[1]
