"""Issue #16 item 3: --limit samples distinct examples; CIs are bootstrapped over examples, not items."""

from collections import Counter

import pytest

from instructkit import stats as S
from instructkit.lm.api import LoglikelihoodResult
from instructkit.eval.sets import load_eval_set
from instructkit.eval.runner import evaluate


def test_cluster_bootstrap_is_wider_than_iid_when_templates_repeat_an_example():
    # 20 examples x 10 templates, each example's items identical: really n = 20, not 200
    vals = [float(i % 2) for i in range(20) for _ in range(10)]
    groups = [i for i in range(20) for _ in range(10)]
    m, lo, hi = S.bootstrap_ci(vals, groups, seed=0)
    _, ilo, ihi = S.bootstrap_ci(vals, None, seed=0)
    assert m == 0.5 and lo < 0.5 < hi
    assert (hi - lo) > 2.5 * (ihi - ilo)
    assert S.bootstrap_ci(vals, groups, seed=0) == (m, lo, hi)  # seeded


def test_bootstrap_ci_width_matches_binomial():
    vals = [float(i % 2) for i in range(400)]
    _, lo, hi = S.bootstrap_ci(vals, range(400), n_boot=2000, seed=1)
    assert hi - lo == pytest.approx(2 * 1.96 * (0.25 / 400) ** 0.5, rel=0.15)


def test_paired_bootstrap_sees_a_consistent_gain_a_unpaired_view_would_miss():
    base = [float(i % 3 == 0) for i in range(90)]
    tuned = [1.0 if i % 10 == 0 else b for i, b in enumerate(base)]  # a few items gained, none lost
    d, lo, hi = S.paired_bootstrap(base, tuned, range(90), seed=0)
    assert d > 0 and lo > 0
    with pytest.raises(ValueError):
        S.paired_bootstrap([1.0], [1.0, 0.0])


def test_verdict_sentences():
    assert "above noise" in S.verdict(0.1, 0.02, 0.2)
    assert "below noise" in S.verdict(-0.1, -0.2, -0.01)
    assert "within noise" in S.verdict(0.01, -0.05, 0.07)


def test_limit_samples_distinct_examples_with_all_templates():
    es = load_eval_set("nli_facts", limit=24, seed=0)
    ex = Counter(it.example_id for it in es.items if not it.twin)  # contrast twins are scored beside them
    n_tpl = len({it.template for it in es.items})
    assert len(ex) == 24 and set(ex.values()) == {n_tpl} and n_tpl > 1
    rows = sorted(int(e.rsplit(":", 1)[1]) for e in ex)
    assert rows != list(range(24))  # a seeded sample, not the first rows
    assert {it.example_id for it in load_eval_set("nli_facts", limit=24, seed=0).items if not it.twin} == set(ex)
    assert {it.example_id for it in load_eval_set("nli_facts", limit=24, seed=1).items if not it.twin} != set(ex)
    golds = Counter(it.target_index for it in es.items)
    assert len(golds) == 3  # every class is evaluated (the first 24 items covered 2-3 examples)


def test_limit_one_template_per_example_spreads_templates():
    es = load_eval_set("nli_facts", limit=40, seed=0, templates="one", twins=False)
    assert len(es.items) == 39 and len({it.example_id for it in es.items}) == 39  # stratified: 13 per class
    per_tpl = Counter(it.template for it in es.items)
    assert max(per_tpl.values()) - min(per_tpl.values()) <= 1


class Random3:
    name = fingerprint = "first-choice"

    def loglikelihood(self, reqs):
        return [LoglikelihoodResult(-1.0 if r.key[2] == 0 else -2.0, False, 1, 1) for r in reqs]


def test_summary_reports_examples_items_chance_and_ci():
    es = load_eval_set("nli_facts", limit=12, seed=0)
    t = evaluate(Random3(), [es], None, progress=False)["tasks"]["nli_facts"]
    main = [it for it in es.items if not it.twin]  # contrast twins enter the twin consistency only
    assert t["n_examples"] == 12 and t["n_items"] == len(main) > 12
    assert t["chance"] == pytest.approx(1 / 3)
    lo, hi = t["ci"]
    assert lo <= t["score"] <= hi and t["metrics"]["acc"]["ci"] == [lo, hi]
    c = t["classes"]
    assert len(c["recall"]) == 3 and any(k.startswith(es.items[0].choices[0].strip()) for k in c["recall"])
    assert c["pred_share"][next(iter(c["recall"]))] == 1.0  # always picks the first choice: recall 1, 0, 0
    assert c["balanced_acc"] == pytest.approx(sum(c["recall"].values()) / 3)


class ShortWrongLM:
    """Summed log-prob prefers a short wrong choice; per character the long right one wins."""
    name = fingerprint = "short-wrong"

    def loglikelihood(self, reqs):
        return [LoglikelihoodResult(-4.0, False, 5, 20) if r.key[2] == 1 else LoglikelihoodResult(-1.0, False, 1, 1)
                for r in reqs]


def test_summary_table_shows_primary_metric_ci_and_acc_norm(tmp_path):
    """Issue #8 item 9: the table showed `acc 0.0000 ± 0.0000` while results.json had acc_norm 1.0."""
    import json
    from rich.console import Console

    from instructkit.eval.cli import _print_results
    rows = [dict(question=f"q{i}", answer_a="a", answer_b="b", answer_c="c", answer_d="d", correct_answer="B")
            for i in range(5)]
    p = tmp_path / "m.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    res = evaluate(ShortWrongLM(), [load_eval_set(f"mmlu:{p}")], None, progress=False)
    con = Console(width=200, record=True)
    _print_results(con, res)
    line = next(x for x in con.export_text().splitlines() if "mmlu:m.jsonl" in x)
    # value, CI, chance (the best baseline: every gold is B, so "always B" scores 1.000, not 1/4)
    assert "acc" in line and "0.0000 [0.0000, 0.0000]" in line and "1.000" in line
    cells = [c.strip() for c in line.split("│")]
    assert cells[7] == "1.000" and cells[8] == "1.0000"  # chance, then acc_norm beside it
