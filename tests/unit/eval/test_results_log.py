"""The results log of pre-registered held-out designs: every run appends, nothing is replaced (issue #25)."""

import json

from instructkit.eval.results_log import append_result, render_log


def _rep(verdict):
    ctl = {"chance": 0.5, "base": {"acc": 0.535}, "calibrated_bar": {"kind": "masked-slot calibrated", "value": 0.65},
           "tuned": {"mean": 0.655, "sd": 0.02, "n_seeds": 3}, "tuned_seeds": [], "oracle": None}
    return {"preregistered": {"design": "(a)", "n_per_task": 64, "seeds": 3}, "limit": 64, "seed": 0,
            "clusters": [{"cluster": "coreference", "held_out": True, "n_examples": 128, "n_items": 256,
                          "controls": ctl, "decision": {"verdict": verdict, "why": "because"}},
                         {"cluster": "topic", "held_out": False, "n_examples": 64, "n_items": 64}]}


def test_every_run_appends_and_the_docs_quote_all_of_them(tmp_path):
    log = tmp_path / "results" / "log.jsonl"
    append_result(log, "flan_heldout", _rep("prior shift"))
    append_result(log, "flan_heldout", _rep("no detectable effect"))
    lines = [json.loads(x) for x in log.read_text().splitlines()]
    assert len(lines) == 2 and lines[0]["preregistered"]["seeds"] == 3
    assert [c["cluster"] for c in lines[0]["clusters"]] == ["coreference"]  # held-out clusters only
    md = render_log(log)
    assert md.count("\n") == 1 and "**prior shift**" in md and "**no detectable effect**" in md
    assert "calibrated base 0.650 (masked-slot calibrated)" in md and "0.655 ± 0.020 over 3 seeds" in md
