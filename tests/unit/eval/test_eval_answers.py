"""Issue #16 item 1: answers extracted and compared as the task declares (numbers as numbers, letters
anchored, free text with a normalisation that cannot erase a target)."""

import json

import pytest

from instructkit.data.tasks import metrics as M
from instructkit.data.tasks.answers import AnswerSpec, extract_letter, extract_number, parse_answer
from instructkit.lm.api import GenerateResult
from instructkit.eval.benchmarks import bbh_answer, load_gsm8k, load_mmlu
from instructkit.eval.datasets import EvalItem, EvalSet
from instructkit.eval.runner import evaluate


@pytest.mark.parametrize("pred,target", [("", "(A)"), ("The", "A"), ("35", "3.5"), ("5", "-5")])
def test_exact_match_issue_examples_do_not_match(pred, target):
    assert M.exact_match(pred, target) == 0.0


@pytest.mark.parametrize("pred,target", [("(A)", "(A)"), ("3.50", "3.5"), ("-5", "-5"), ("1,000", "1000"),
                                         ("The Cat!", "cat")])
def test_exact_match_still_matches(pred, target):
    assert M.exact_match(pred, target) == 1.0


def test_extract_answer_stops_at_sentence_end():
    assert M.extract_answer("The answer is 42. Next we") == "42"
    assert M.extract_answer("The answer is 42. Next we", "number") == "42"
    assert M.extract_answer("So the answer is 3.5 dollars. Then", "number") == "3.5"


@pytest.mark.parametrize("text,want", [
    ("The answer is (B).", "B"), ("B)", "B"), ("(B)", "B"), ("B", "B"), ("B. Paris", "B"),
    ("Let's think. So the answer is (C).", "C"),
    ("Because the sky is blue", ""), ("Both are wrong", ""), ("A dog barks", ""), ("", ""),
])
def test_letter_extraction_is_anchored(text, want):
    assert extract_letter(text) == want


@pytest.mark.parametrize("text,want", [
    ("#### 1,234", "1234"), ("So the answer is $18.00.", "18"), ("It fell to -5 degrees.", "-5"),
    ("The answer is 3.5 dollars.", "3.5"), ("He paid $1,250.50 in total.", "1250.5"), ("none", ""),
])
def test_number_extraction(text, want):
    assert extract_number(text) == want


def test_numeric_compare_sign_decimal_separators():
    spec = AnswerSpec("number", "numeric")
    assert spec.score(spec.extract_text("The answer is $1,000."), "1000") == 1.0
    assert spec.score(spec.extract_text("The answer is 35."), "3.5") == 0.0
    assert spec.score(spec.extract_text("The answer is 5."), "-5") == 0.0
    assert spec.score(spec.extract_text("no idea"), "0") == 0.0


def test_choice_and_regex_extraction():
    spec = AnswerSpec("choice", "normalized_text")
    assert spec.score(spec.extract_text("So the answer is True.", ["True", "False"]), "True", ["True", "False"]) == 1.0
    assert spec.score(spec.extract_text("false, because", ["True", "False"]), "True", ["True", "False"]) == 0.0
    rx = AnswerSpec("regex", "exact", pattern=r"ANSWER: (\w+)")
    assert rx.score(rx.extract_text("blah ANSWER: cat."), "cat") == 1.0


def test_answer_spec_from_yaml_mapping_and_errors():
    assert parse_answer(None, "exact_match") == AnswerSpec("first_line", "normalized_text")
    assert parse_answer({"compare": "numeric"}).extract == "number"
    assert parse_answer({"compare": "math"}) == AnswerSpec("math", "math")
    assert parse_answer({"compare": "rouge_l"}).extract == "full"
    for bad, msg in [({"extract": "nope"}, "extract 'nope'"), ({"compare": "x"}, "compare 'x'"),
                     ({"extract": "regex"}, "needs pattern"), ({"foo": 1}, "unknown key 'foo'"), ("x", "mapping")]:
        with pytest.raises(ValueError, match=msg):
            parse_answer(bad)


def test_task_yaml_declares_answer(tmp_path):
    from instructkit.data.tasks import load_task
    from instructkit.errors import ConfigError
    (tmp_path / "v.jsonl").write_text(json.dumps({"q": "2+2?", "a": "4"}) + "\n")
    y = tmp_path / "t.yaml"
    y.write_text("id: sums\ncluster: math\nsource: {files: {validation: v.jsonl}}\n"
                 "answer: {extract: number, compare: numeric}\n"
                 "templates:\n  - {id: t1, input: '{{q}}', target: '{{a}}'}\n")
    assert load_task(str(y)).answer == AnswerSpec("number", "numeric")
    y2 = tmp_path / "bad.yaml"
    y2.write_text(y.read_text().replace("id: sums", "id: bad").replace("compare: numeric", "compare: nope"))
    with pytest.raises(ConfigError, match=r"bad.yaml: key 'answer': compare 'nope'"):
        load_task(str(y2))


def test_builtin_loaders_declare_scoring(tmp_path):
    assert bbh_answer(["(A)", "(C)"])[0] == AnswerSpec("letter", "exact")
    assert bbh_answer(["12", "-3"])[0] == AnswerSpec("math", "math")  # math-verify where installed
    spec, labels = bbh_answer(["True", "False", "True"])
    assert spec.extract == "choice" and labels == ["False", "True"]
    g = tmp_path / "test.jsonl"
    g.write_text(json.dumps({"question": "q", "answer": "x #### 1,000"}) + "\n")
    assert load_gsm8k(str(g), "zero_shot_cot").items[0].spec == AnswerSpec("math", "math")
    m = tmp_path / "m.jsonl"
    m.write_text(json.dumps(dict(question="q", answer_a="a", answer_b="b", answer_c="c", answer_d="d",
                                 correct_answer="B")) + "\n")
    assert load_mmlu(m, "zero_shot_cot").items[0].spec == AnswerSpec("letter", "exact")


class Says:
    name = fingerprint = "says"

    def __init__(self, text):
        self.text = text

    def generate(self, reqs):
        return [GenerateResult([self.text] * r.n, [3] * r.n) for r in reqs]


@pytest.mark.parametrize("text,correct", [("Because the options differ, it is unclear.", False),
                                          ("The answer is (B).", True), ("(A)", False)])
def test_runner_scores_letters_anchored(tmp_path, text, correct):
    es = EvalSet("mc", [EvalItem("mc", 0, "Q?", "B", answer_kind="letter", cot=True)], "zero_shot_cot")
    res = evaluate(Says(text), [es], None, progress=False)
    assert res["tasks"]["mc"]["metrics"]["exact_match"]["value"] == float(correct)


def test_runner_scores_numbers_as_numbers():
    es = EvalSet("m", [EvalItem("m", 0, "Q?", "3.5", answer_kind="number", cot=True)], "zero_shot_cot")
    assert evaluate(Says("The answer is 35."), [es], None, progress=False)["tasks"]["m"]["score"] == 0.0
    assert evaluate(Says("The answer is 3.50. Done"), [es], None, progress=False)["tasks"]["m"]["score"] == 1.0
