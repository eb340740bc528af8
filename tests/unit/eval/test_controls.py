"""Issue #25: the controls that separate transfer from a prior over the options (all fail on the old code)."""

import json
from collections import Counter

import pytest

from instructkit.eval.controls import baselines, calibrated_pred, margin_auc, task_controls, twin_consistency
from instructkit.eval.sets import load_eval_set
from instructkit.eval.runner import evaluate
from instructkit.lm.api import LoglikelihoodResult

FIRST = {"yes", "correct", "true"}  # option 1 of every nli_facts template


class PriorLM:
    """A scorer with a known option prior: +2 on option 1 ("yes"/"correct"/"true") everywhere, +1 on the gold
    answer of a real prompt only. Raw argmax always says option 1; calibration must remove the +2."""

    def __init__(self, gold: dict[str, str]):
        self.name = self.fingerprint = "prior-lm"
        self.gold = gold

    def loglikelihood(self, reqs):
        out = []
        for r in reqs:
            c = r.continuation.strip()
            s = -5.0 + 2.0 * (c in FIRST) + 1.0 * (self.gold.get(r.context) == c)
            out.append(LoglikelihoodResult(s, False, 1, len(c)))
        return out

    def generate(self, reqs):
        raise AssertionError("rank classification only")


def test_calibration_removes_a_known_option_prior(tmp_path):
    es = load_eval_set("nli_facts", "zero_shot", 30, seed=0, templates="one")
    gold = {it.prompt: it.target.strip() for it in es.items}
    assert all(it.cf_prompts and it.mask_prompt for it in es.items)
    assert all(it.mask_prompt != it.prompt and "___" in it.mask_prompt for it in es.items)
    res = evaluate(PriorLM(gold), [es], tmp_path, progress=False)
    t = res["tasks"]["nli_facts"]
    ctl = t["controls"]
    assert t["score"] == pytest.approx(1 / 3)  # raw: always option 1, a third of a balanced sample
    assert ctl["balanced_acc"] == pytest.approx(1 / 3) and ctl["pred_share"]["option 1"] == 1.0
    assert ctl["calibrated_content_free"]["value"] == 1.0  # the prior is gone, the +1 signal decides
    assert ctl["calibrated_masked_slot"]["value"] == 1.0
    assert ctl["margin_auc"] == 1.0  # invariant to a constant preference for option 1
    assert ctl["chance"] == pytest.approx(1 / 3)


def test_calibrated_pred_is_argmax_minus_prior():
    assert calibrated_pred([-1.0, -1.5], [-0.1, -3.0]) == 1  # option 1 favoured by the prior
    assert calibrated_pred([-1.0, -1.5], [[-1.0, -1.0]]) == 0  # a flat prior changes nothing


def _rows(golds, preds, scores=None):
    return [dict(gold_class=g, pred_class=p, correct=g == p, scores=s or [0.0, 0.0], example_id=str(i),
                 choices=["a", "b"]) for i, (g, p, s) in enumerate(zip(golds, preds, scores or [None] * len(golds)))]


def test_chance_line_is_the_majority_baseline_on_an_unbalanced_sample():
    rows = _rows([1] * 54 + [0] * 46, [1] * 100)
    b = baselines(rows)
    assert b["best"]["acc"] == 0.54 and b["majority"]["class"] == 2 and b["uniform"] == 0.5
    assert task_controls(rows)["chance"] == 0.54


def test_chance_in_results_is_the_majority_baseline(tmp_path):
    p = tmp_path / "m.jsonl"
    p.write_text("".join(json.dumps(dict(question=f"Q{i}?", answer_a="w", answer_b="x", answer_c="y", answer_d="z",
                                         correct_answer="B" if i < 7 else "C")) + "\n" for i in range(10)))
    from instructkit.eval.benchmarks import load_mmlu
    lm = PriorLM({})
    res = evaluate(lm, [load_mmlu(p)], tmp_path / "o", progress=False)
    assert res["tasks"]["mmlu:m.jsonl"]["chance"] == 0.7  # 7 of 10 gold B, not 1/4


def test_generative_chance_is_the_most_frequent_answer():
    rows = [dict(gold=[a], metrics={"exact_match": 0.0}, correct=False) for a in ["4", "4", "4", "7"]]
    assert baselines(rows)["best"]["acc"] == 0.75


def test_margin_auc_ignores_a_constant_preference():
    scores = [[0.0, 0.2], [0.0, -0.2], [0.0, 0.5], [0.0, -0.1]]
    rows = _rows([1, 0, 1, 0], [1, 0, 1, 0], scores)
    shifted = _rows([1, 0, 1, 0], [1, 1, 1, 1], [[a, b + 5] for a, b in scores])
    assert margin_auc(rows) == margin_auc(shifted) == 1.0


def test_twin_consistency_counts_pairs_with_both_right():
    rows = _rows([0, 1, 0, 1], [0, 0, 0, 1])
    for r, p in zip(rows, ["a", "a", "b", "b"]):
        r["pair"] = p
    tw = twin_consistency(rows)
    assert tw["n_pairs"] == 2 and tw["value"] == 0.5 and tw["same_answer"] == 0.5


def test_stratified_sampling_balances_classes_exactly():
    for task, k, n in (("nli_facts", 3, 30), ("coref_gender", 2, 40), ("sentiment_movie", 2, 25)):
        es = load_eval_set(task, "zero_shot", n, seed=3, templates="one")
        main = [it for it in es.items if not it.twin]
        c = Counter(it.target_index for it in main)
        assert len(c) == k and len(set(c.values())) == 1 and sum(c.values()) == n // k * k, (task, c)
        assert es.sampling["stratified"]
        again = load_eval_set(task, "zero_shot", n, seed=3, templates="one")
        other = load_eval_set(task, "zero_shot", n, seed=4, templates="one")
        assert [i.example_id for i in again.items] == [i.example_id for i in es.items]
        assert [i.example_id for i in other.items] != [i.example_id for i in es.items]


def test_twins_are_scored_beside_their_original():
    es = load_eval_set("coref_gender", "zero_shot", 20, seed=0, templates="one")
    twins = [it for it in es.items if it.twin]
    assert len(twins) == 20 and es.sampling["twins"] == 20
    by = {it.pair: it for it in es.items if not it.twin}
    for t in twins:
        o = by[t.pair]
        assert t.template == o.template and t.choices == o.choices and t.target_index == 1 - o.target_index


def test_cli_eval_coref_gender_writes_the_controls(tmp_path, tiny_model_dir):
    """`instructkit eval --tasks coref_gender --limit 20` -> results.json with the calibrated score, the
    baselines, balanced accuracy, margin AUC and twin consistency (issue #25 acceptance)."""
    from typer.testing import CliRunner

    from instructkit.cli import app
    out = tmp_path / "ev"
    r = CliRunner().invoke(app, ["eval", "--model", tiny_model_dir, "--tasks", "coref_gender", "--limit", "20",
                                 "--batch-size", "8", "--out", str(out)])
    assert r.exit_code == 0, r.output
    t = json.loads((out / "results.json").read_text())["tasks"]["coref_gender"]
    ctl = t["controls"]
    # 20 rows (10 per class) under every template (eval.templates=all), each item with its twin
    assert t["n_examples"] == 20 and t["sampling"]["per_class"] == 10 and t["sampling"]["twins"] == t["n_items"]
    assert ctl["chance"] == 0.5 and set(ctl["baselines"]["always"]) == {"always_option_1", "always_option_2"}
    for k in ("calibrated_content_free", "calibrated_masked_slot"):
        assert 0 <= ctl[k]["value"] <= 1 and len(ctl[k]["ci"]) == 2 and ctl[k]["n"] == t["n_items"]
    assert 0 <= ctl["balanced_acc"] <= 1 and 0 <= ctl["margin_auc"] <= 1
    assert ctl["twin_consistency"]["n_pairs"] == t["n_items"] and 0 <= ctl["twin_consistency"]["value"] <= 1
    assert t["ll_boundary_merges"]["requests"] > 0 and t["ll_boundary_merges"]["merged"] >= 0


def test_a_task_with_only_a_training_file_is_split_never_scored_on_training_rows(tmp_path):
    from instructkit.data.tasks import load_task
    from instructkit.errors import ConfigError
    rows = [{"p": f"claim number {i}", "y": "yes" if i % 2 else "no"} for i in range(200)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    y = tmp_path / "t.yaml"
    y.write_text("id: onlytrain\ncluster: c\nmetric: accuracy\nanswer_choices: ['yes', 'no']\n"
                 "source: {files: {train: train.jsonl}}\ntemplates:\n  - {id: a, input: '{{p}}?', target: '{{y}}'}\n")
    t = load_task(str(y))
    train, held = t.load_split("train"), t.load_split(t.eval_split)
    assert t.eval_split == "heldout" and "10%" in t.split_note
    assert held and not {r["p"] for r in held} & {r["p"] for r in train} and len(train) + len(held) == 200
    es = load_eval_set(str(y), "zero_shot", None)
    assert {it.prompt for it in es.items} == {f"{r['p']}?" for r in held} and "split_note" in es.sampling
    y.write_text(y.read_text() + "eval_split: train\n")
    from instructkit.data.tasks.task import _load_path
    _load_path.cache_clear()
    with pytest.raises(ConfigError, match="training split"):
        load_task(str(y))


def test_zero_shot_cot_yes_no_extraction_counts_unparsed_answers():
    """Flan 2022 zero-shot CoT on a yes/no task: a completion without "the answer is" was scored by its first
    reasoning line (0.000 accuracy); now the choice it names last, else an unparsed answer that is counted."""
    from instructkit.data.tasks.answers import AnswerSpec
    spec = AnswerSpec("choice", "normalized_text")
    cot = "Jonas is a hockey player. Scoring a goal is part of hockey, so yes, the sentence is plausible."
    assert spec.extract_text(cot, ["no", "yes"]) == "yes"
    assert spec.extract_text("So the answer is no.", ["no", "yes"]) == "no"
    assert spec.extract_text("It depends on the league.", ["no", "yes"]) == ""
    from instructkit.eval.datasets import EvalItem, EvalSet
    from instructkit.lm.api import GenerateResult

    class Says:
        name = fingerprint = "says"

        def generate(self, reqs):
            return [GenerateResult(["Hard to say." if int(r.prompt[1:]) % 2 else "Plausible, so yes."], [3]) for r in reqs]

    items = [EvalItem("yn", i, f"Q{i}", "yes", cot=True, answer=spec, options=["no", "yes"]) for i in range(4)]
    res = evaluate(Says(), [EvalSet("yn", items, "zero_shot_cot")], None, progress=False)
    t = res["tasks"]["yn"]
    assert t["unparsed"] == 2 and t["score"] == 0.5 and t["chance"] == 1.0  # always "yes" is right here
