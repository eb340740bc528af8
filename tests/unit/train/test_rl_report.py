"""rl.report: per-run paired deltas and the pooled delta over seeds (items as clusters)."""

import json
from types import SimpleNamespace

import pytest

from instructkit.errors import ConfigError
from instructkit.train.rl.report import pooled, stage


def _run(tmp_path, name, before, after):
    d = tmp_path / name
    d.mkdir()
    items = [{"id": f"q{i}", "scores_before": {"answer": b}, "scores_after": {"answer": a}}
             for i, (b, a) in enumerate(zip(before, after))]
    n = len(items)
    report = {"n": n, "metrics": {"answer": {"before": sum(before) / n, "after": sum(after) / n,
                                             "delta": (sum(after) - sum(before)) / n, "delta_ci": [0.0, 0.5]}},
              "items": items}
    (d / "heldout.json").write_text(json.dumps(report))
    (d / "summary.json").write_text("{}")
    return {"summary": str(d / "summary.json"), "model": str(d / "model")}


def test_pooled_delta_over_seeds(tmp_path):
    runs = {"s0": _run(tmp_path, "s0", [0, 0, 1, 0], [1, 0, 1, 1]), "s1": _run(tmp_path, "s1", [0, 0, 1, 0], [1, 1, 1, 0])}
    ctx = SimpleNamespace(inputs=runs, out=tmp_path / "report", console=SimpleNamespace(print=lambda *a, **k: None))
    out = stage(ctx, SimpleNamespace(name="t", description="d"))
    sc = out["scores"]["answer (after - before)"]
    assert sc["before"] == pytest.approx(0.25) and sc["after"] == pytest.approx(0.75)
    assert sc["value"] == pytest.approx(0.5) and sc["n"] == 4  # 4 items, each scored in 2 seeds
    lo, hi = sc["ci"]
    assert lo <= 0.5 <= hi and lo >= 0.0  # every per-item delta is >= 0
    assert "all 2 runs" in (tmp_path / "report" / "report.md").read_text()
    p = pooled({k: json.loads((tmp_path / k / "heldout.json").read_text()) for k in ("s0", "s1")}, "answer")
    assert p["n_runs"] == 2 and p["delta"] == pytest.approx(0.5)


def test_report_needs_heldout(tmp_path):
    d = tmp_path / "r"
    d.mkdir()
    ctx = SimpleNamespace(inputs={"s0": {"summary": str(d / "summary.json")}}, out=tmp_path / "o",
                          console=SimpleNamespace(print=print))
    with pytest.raises(ConfigError, match="heldout"):
        stage(ctx, SimpleNamespace(name="t", description=""))
