"""The recipe report shows the tool evals' 95% CIs (the column was blank: the stages gave only stderr)."""

from __future__ import annotations

import io
import json
from types import SimpleNamespace

from rich.console import Console

from instructkit.stats import paired_bootstrap
from instructkit.pipeline.builtin import report
from instructkit.tools.experiment import accuracy_ci, report_markdown
from instructkit.tools.stage import report_scores


def _res(with_tools, without_tools):
    res = {"model": "m", "n": len(with_tools), "tools": "calculator", "template": "chatml_tools", "parser": "hermes",
           "max_calls": 4, "test": "t.jsonl", "offset": 0, "task": "gsm8k", "modes": {}}
    for mode, v in (("with_tools", with_tools), ("without_tools", without_tools)):
        acc, lo, hi = accuracy_ci(v)
        res["modes"][mode] = {"accuracy": acc, "ci95": [lo, hi], "counts": {"made": 3}}
    d, lo, hi = paired_bootstrap(without_tools, with_tools)
    res["delta_with_minus_without"] = {"value": d, "ci95": [lo, hi]}
    return res


def test_report_rows_carry_the_eval_ci_and_the_paired_delta(tmp_path):
    res = _res([1, 0, 1, 1, 0, 0, 1, 0, 1, 1] * 3, [0, 0, 1, 0, 0, 0, 1, 0, 0, 1] * 3)
    outs = {"scores": report_scores(res, "gsm8k"), "model": "m"}
    ctx = SimpleNamespace(inputs={"base": outs}, out=tmp_path, console=Console(file=io.StringIO()))
    report(ctx, SimpleNamespace(name="lamda_tools", description="d"))
    rows = {r["task"]: r for r in json.loads((tmp_path / "report.json").read_text())["rows"]}
    assert set(rows) == {"gsm8k_with_tools", "gsm8k_without_tools", "gsm8k_delta", "gsm8k_tool_calls"}
    assert rows["gsm8k_with_tools"]["chance"] == 0.0
    # how often the model called its tools is part of the result (made / parsed / executed / failed)
    assert rows["gsm8k_tool_calls"]["value"] == "3 / 0 / 0 / 0"
    w = res["modes"]["with_tools"]
    assert rows["gsm8k_with_tools"]["value"] == w["accuracy"] == 0.6 and rows["gsm8k_with_tools"]["ci"] == w["ci95"]
    assert rows["gsm8k_delta"]["value"] == res["delta_with_minus_without"]["value"]
    md = (tmp_path / "report.md").read_text()
    own = report_markdown(res)  # the eval's own report: the same interval, to 3 decimals
    for line in md.splitlines():
        if line.startswith("| base | gsm8k_") and "tool_calls" not in line:
            ci = line.split("|")[7].strip()
            assert ci.startswith("[") and ci.endswith("]"), line  # never blank
    assert f"[{w['ci95'][0]:.3f}, {w['ci95'][1]:.3f}]" in own
    assert f"[{w['ci95'][0]:.4f}, {w['ci95'][1]:.4f}]" in md


def test_all_wrong_is_not_reported_as_certain():
    # 0/12 (last toy run): the percentile bootstrap said [0, 0]; Wilson says up to ~0.24
    acc, lo, hi = accuracy_ci([0.0] * 12)
    assert acc == 0.0 and lo == 0.0 and 0.24 < hi < 0.25
    acc, lo, hi = accuracy_ci([1.0] * 30 + [0.0] * 70)
    assert acc == 0.3 and abs(lo - 0.2189) < 1e-3 and abs(hi - 0.3958) < 1e-3  # Wilson, 30/100
    sc = report_scores(_res([0] * 12, [0] * 12), "gsm8k")
    assert sc["gsm8k_with_tools"]["ci"][1] > 0.24 and sc["gsm8k_delta"]["format"] == "with - without (paired)"
    assert "every pair agrees" in report_markdown(_res([0] * 12, [0] * 12))
