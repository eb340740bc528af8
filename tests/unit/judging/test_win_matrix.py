"""The win-rate matrix (base layer) from a hand-counted battle set."""

from __future__ import annotations

import math

import numpy as np


def test_win_rate_matrix_counts_ties_half(tmp_path):
    from instructkit.judging.ratings import win_rate_matrix
    from instructkit.judging.ratings_plot import plot_win_matrix
    battles = ([{"model_a": "x", "model_b": "y", "winner": "model_a"}] * 3
               + [{"model_a": "y", "model_b": "x", "winner": "tie"}]
               + [{"model_a": "z", "model_b": "x", "winner": "tie (bothbad)"}])
    models, rate, n = win_rate_matrix(battles)
    assert models == ["x", "y", "z"]
    assert rate[0, 1] == (3 + 0.5) / 4 and rate[1, 0] == 0.5 / 4
    assert rate[0, 2] == rate[2, 0] == 0.5
    assert math.isnan(rate[1, 2]) and n[1, 2] == 0 and n[0, 1] == n[1, 0] == 4
    assert np.allclose(rate + rate.T, np.where(n > 0, 1.0, np.nan), equal_nan=True)
    out = plot_win_matrix(battles, tmp_path / "w.png", order=["z", "y", "x"])
    assert out.stat().st_size > 3000
