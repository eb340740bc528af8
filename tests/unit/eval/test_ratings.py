"""Elo and Bradley-Terry ratings against simulations whose true ratings are known."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from instructkit.errors import DataError
from instructkit.judging.ratings import (_win_matrix, bt_logits, bt_ratings, elo_ratings, encode, leaderboard,
                                      load_battles, online_elo, to_markdown, write_leaderboard)

TRUE = np.array([1250.0, 1120.0, 1040.0, 1000.0, 930.0, 860.0, 800.0])
TRUE = TRUE - TRUE.mean() + 1000.0          # mean-anchored, like bt_ratings' default


def simulate(n: int, seed: int, tie: float = 0.1) -> list[dict]:
    """Battles from BT probabilities; a tie takes tie/2 from each side, so the expected score stays p."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        i, j = rng.choice(len(TRUE), 2, replace=False)
        p = 1.0 / (1.0 + 10 ** ((TRUE[j] - TRUE[i]) / 400))
        u = rng.random()
        w = "model_a" if u < p - tie / 2 else "tie" if u < p + tie / 2 else "model_b"
        out.append({"model_a": f"m{i}", "model_b": f"m{j}", "winner": w})
    return out


def test_bt_ci_covers_true_ratings():
    rows = leaderboard(simulate(4000, seed=1), rounds=200, n_perm=20, seed=0)
    by = {r.model: r for r in rows}
    covered = [by[f"m{i}"].ci_low <= t <= by[f"m{i}"].ci_high for i, t in enumerate(TRUE)]
    assert sum(covered) >= 6, covered                 # 95% CIs: at most one of 7 may miss by chance
    assert [r.model for r in rows] == [f"m{i}" for i in range(7)]
    width = np.mean([r.ci_high - r.ci_low for r in rows])
    assert 20 < width < 120                            # informative, not degenerate


def test_bt_is_the_mle():
    enc = encode(simulate(1500, seed=2))
    w = _win_matrix(enc.a, enc.b, enc.s, len(enc.models))
    r = bt_logits(w, l2=0.0)
    p = 1.0 / (1.0 + np.exp(r[None, :] - r[:, None]))
    # score equations: each model's points equal its expected points
    np.testing.assert_allclose(w.sum(1), ((w + w.T) * p).sum(1), atol=1e-6)
    elo = bt_ratings(enc)
    assert elo.mean() == pytest.approx(1000.0)
    assert bt_ratings(enc, anchor="m3")[3] == pytest.approx(1000.0)
    np.testing.assert_allclose(np.diff(elo), np.diff(bt_ratings(enc, anchor="m3")), atol=1e-6)


def test_undefeated_model_gets_finite_rating():
    b = [{"model_a": "a", "model_b": "b", "winner": "model_a"}] * 5 + \
        [{"model_a": "b", "model_b": "c", "winner": "tie"}] * 5
    r = bt_ratings(encode(b))
    assert np.all(np.isfinite(r)) and r[0] > r[1] + 500


def test_elo_update_and_order():
    # one battle by hand: equal ratings, a wins -> +K/2
    r = online_elo(np.array([0]), np.array([1]), np.array([1.0]), 2)
    np.testing.assert_allclose(r[0], [1002.0, 998.0])
    enc = encode(simulate(3000, seed=3))
    rows = online_elo(enc.a[None], enc.b[None], enc.s[None], 7)
    assert rows.mean() == pytest.approx(1000.0)       # zero-sum updates
    elo = elo_ratings(enc, n_perm=30, seed=0)
    assert abs(elo.mean() - 1000.0) < 5               # per-model medians: nearly, not exactly, zero-sum
    assert list(np.argsort(-elo)) == list(range(7))
    np.testing.assert_array_equal(elo, elo_ratings(enc, n_perm=30, seed=0))  # seeded


def test_ties_are_half_wins():
    b = [{"model_a": "a", "model_b": "b", "winner": w} for w in ("model_a", "model_b", "tie", "tie (bothbad)")]
    r = bt_ratings(encode(b))
    assert r[0] == pytest.approx(r[1])
    rows = leaderboard(b, rounds=10, n_perm=5)
    assert rows[0].wins == 1 and rows[0].ties == 2 and rows[0].losses == 1 and rows[0].win_rate == 0.5


def test_load_battles_errors_name_line_and_field(tmp_path):
    f = tmp_path / "b.jsonl"
    f.write_text('{"model_a": "x", "model_b": "y", "winner": "model_a"}\n{"model_a": "x", "model_b": "y", '
                 '"winner": "A"}\n')
    with pytest.raises(DataError, match=r"b.jsonl:2: field 'winner'"):
        load_battles(f)
    f.write_text('{"model_a": "x", "winner": "tie"}\n')
    with pytest.raises(DataError, match=r":1: field 'model_b'"):
        load_battles(f)
    f.write_text('{"model_a": "x", "model_b": "y", "winner": "tie"}\nnot json\n')
    with pytest.raises(DataError, match=r":2: invalid JSON"):
        load_battles(f)


def test_leaderboard_files_and_cli(tmp_path):
    f = tmp_path / "battles.jsonl"
    f.write_text("".join(json.dumps(b) + "\n" for b in simulate(600, seed=4)))
    from instructkit.eval.cli import app
    res = CliRunner().invoke(app, ["leaderboard", "--battles", str(f), "--out", str(tmp_path / "lb"),
                                   "--bootstrap", "50", "--permutations", "10"])
    assert res.exit_code == 0, res.output
    md = (tmp_path / "lb" / "leaderboard.md").read_text()
    assert md.count("\n") == 2 + 7 and "| 1 | m0 |" in md
    ratings = json.loads((tmp_path / "lb" / "ratings.json").read_text())
    assert [r["model"] for r in ratings][0] == "m0" and ratings[0]["battles"] > 100
    png = (tmp_path / "lb" / "leaderboard.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_rank_uses_ci_overlap(tmp_path):
    rows = write_leaderboard(simulate(300, seed=5), tmp_path, rounds=50, n_perm=5)
    for r in rows:
        assert r.rank == 1 + sum(o.ci_low > r.ci_high for o in rows)
    assert rows[0].rank == 1
    assert "Bradley-Terry" in to_markdown(rows)
