"""Loaders for MMLU / BBH / GSM8K / task-system examples on tiny files; malformed rows -> file:line:field."""

import json
from types import SimpleNamespace

import pytest

from instructkit.errors import DataError, InstructkitError
from instructkit.eval.benchmarks import load_bbh, load_gsm8k, load_mmlu
from instructkit.eval.sets import load_eval_set
from instructkit.eval.task_sets import examples_to_set


def mmlu_row(q="What is 2+2?", ans="B"):
    return dict(question=q, answer_a="3", answer_b="4", answer_c="5", answer_d="6", correct_answer=ans, topic="math")


def write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_mmlu_jsonl_drops_header_rows_and_counts(tmp_path):
    p = write_jsonl(tmp_path / "mmlu.jsonl", [mmlu_row(), mmlu_row(ans="answer"), mmlu_row(q="Q2", ans="d")])
    es = load_mmlu(p)
    assert len(es.items) == 2 and es.dropped["answer_is_header"] == 1
    it = es.items[0]
    assert it.choices == [" A", " B", " C", " D"] and it.target_index == 1
    assert it.prompt.endswith("Answer:") and "B. 4" in it.prompt
    assert es.items[1].target_index == 3


def test_mmlu_csv_and_few_shot(tmp_path):
    p = tmp_path / "m.csv"
    p.write_text("Q1?,a,b,c,d,A\nQ2?,a,b,c,d,C\nQ3?,a,b,c,d,D\n")
    es = load_mmlu(p, "few_shot", k=2)
    assert len(es.items) == 1 and es.dropped["used_as_exemplars"] == 2
    assert es.items[0].prompt.startswith("Q1?") and " A\n\nQ2?" in es.items[0].prompt


@pytest.mark.parametrize("bad,field", [(mmlu_row(ans="E"), "correct_answer"),
                                       ({k: v for k, v in mmlu_row().items() if k != "answer_c"}, "answer_c"),
                                       ({**mmlu_row(), "question": ""}, "question")])
def test_mmlu_malformed_names_file_line_field(tmp_path, bad, field):
    p = write_jsonl(tmp_path / "m.jsonl", [mmlu_row(), bad])
    with pytest.raises(DataError) as e:
        load_mmlu(p)
    assert e.value.line == 2 and e.value.field == field
    assert f"{p}:2" in str(e.value) and field in str(e.value)


def test_mmlu_invalid_json_and_csv_columns(tmp_path):
    p = write_jsonl(tmp_path / "m.jsonl", [mmlu_row(), "{not json"])
    with pytest.raises(DataError, match=r"m.jsonl:2: invalid JSON"):
        load_mmlu(p)
    c = tmp_path / "m.csv"
    c.write_text("Q1?,a,b,c,d,A\nQ2?,a,b\n")
    with pytest.raises(DataError, match=r"m.csv:2: field 'columns'"):
        load_mmlu(c)


@pytest.fixture()
def bbh_dir(tmp_path):
    (tmp_path / "bbh" / "tasks").mkdir(parents=True)
    (tmp_path / "bbh" / "cot-prompts").mkdir()
    (tmp_path / "bbh" / "tasks" / "toy.json").write_text(json.dumps(
        {"examples": [{"input": "not True is", "target": "False"}, {"input": "True and True is", "target": "True"}]}))
    (tmp_path / "bbh" / "cot-prompts" / "toy.txt").write_text(
        "canary\n-----\nEvaluate booleans.\n\nQ: not False is\nA: Let's think step by step.\nnot False = True. "
        "So the answer is True.\n\nQ: False or False is\nA: Let's think step by step.\nBoth false. So the answer is False.")
    return tmp_path


def test_bbh_few_shot_cot_prompt(bbh_dir):
    es = load_bbh("toy", "few_shot_cot", data_dir=bbh_dir)
    assert [it.target for it in es.items] == ["False", "True"]
    p = es.items[0].prompt
    assert p.startswith("Evaluate booleans.\n\nQ: not False is\nA: Let's think step by step.")
    assert p.endswith("Q: not True is\nA: Let's think step by step.") and p.count("So the answer is") == 2
    fs = load_bbh("toy", "few_shot", data_dir=bbh_dir)
    assert "Q: not False is\nA: True\n\n" in fs.items[0].prompt and not fs.items[0].cot


def test_bbh_malformed(bbh_dir):
    f = bbh_dir / "bbh" / "tasks" / "toy.json"
    f.write_text(json.dumps({"examples": [{"input": "x", "target": "y"}, {"target": "z"}]}))
    with pytest.raises(DataError, match=r"toy.json:2: field 'input'"):
        load_bbh(str(f), "zero_shot")
    f.write_text("[1, 2")
    with pytest.raises(DataError, match="invalid JSON"):
        load_bbh(str(f), "zero_shot")
    with pytest.raises(InstructkitError, match="not found"):
        load_bbh("nope", data_dir=bbh_dir)


def test_gsm8k(tmp_path):
    d = tmp_path / "gsm8k"
    d.mkdir()
    write_jsonl(d / "train.jsonl", [{"question": "1+1?", "answer": "1+1=<<1+1=2>>2\n#### 2"}])
    write_jsonl(d / "test.jsonl", [{"question": "2+3?", "answer": "so\n#### 5"},
                                   {"question": "big?", "answer": "#### 1,000"}])
    es = load_gsm8k("", "few_shot_cot", data_dir=tmp_path)
    assert [it.target for it in es.items] == ["5", "1000"]
    assert es.items[0].prompt == "Question: 1+1?\nAnswer: 1+1=2\n#### 2\n\nQuestion: 2+3?\nAnswer:"
    write_jsonl(d / "test.jsonl", [{"question": "2+3?", "answer": "5"}])
    with pytest.raises(DataError, match=r"test.jsonl:1: field 'answer'"):
        load_gsm8k(str(d / "test.jsonl"), "zero_shot")


def test_task_examples_to_items():
    ex = lambda **kw: SimpleNamespace(**{"answer_choices": None, "metric": None, **kw})  # noqa: E731
    es = examples_to_set("rte", [ex(prompt="Premise ... Yes or no?", target="no", answer_choices=["yes", "no"]),
                                 ex(prompt="Summarize:", target="a summary", metric="rouge_l")], "zero_shot", "nli")
    mc, gen = es.items
    assert mc.choices == [" yes", " no"] and mc.target_index == 1 and mc.cluster == "nli"
    assert gen.choices is None and gen.metric == "rouge_l"
    with pytest.raises(DataError, match="field 'target'"):
        examples_to_set("rte", [ex(prompt="p", target="maybe", answer_choices=["yes", "no"])], "zero_shot")


def test_load_eval_set_limit_and_bad_format(tmp_path):
    p = write_jsonl(tmp_path / "m.jsonl", [mmlu_row(q=f"Q{i}") for i in range(5)])
    assert len(load_eval_set(f"mmlu:{p}", limit=3).items) == 3
    with pytest.raises(InstructkitError, match="unknown format"):
        load_eval_set(f"mmlu:{p}", fmt="three_shot")


def test_every_loader_reads_the_format_value_the_same_way(bbh_dir):
    """The four formats (or a Format value) give each loader's expected shape: few-shot adds exemplars,
    CoT adds the trigger (zero-shot) or reasoned exemplars (few-shot); the set records the format's name."""
    from instructkit.data.tasks.formats import COT_TRIGGER, Format
    d = bbh_dir / "gsm8k"
    d.mkdir()
    write_jsonl(d / "train.jsonl", [{"question": "1+1?", "answer": "1+1=<<1+1=2>>2\n#### 2"}])
    write_jsonl(d / "test.jsonl", [{"question": "2+3?", "answer": "so\n#### 5"}])
    want = {"zero_shot": (False, False), "few_shot": (True, False), "zero_shot_cot": (False, True),
            "few_shot_cot": (True, True)}
    for name, (few, cot) in want.items():
        for fmt in (name, Format.parse(name)):
            b = load_bbh("toy", fmt, data_dir=bbh_dir)
            p = b.items[0].prompt
            assert b.fmt == name and b.items[0].cot == cot
            assert ("Q: not False is" in p) == few and ("not False = True" in p) == (few and cot)
            assert p.endswith("A: " + COT_TRIGGER) == cot
            g = load_gsm8k("", fmt, data_dir=bbh_dir).items[0].prompt
            assert ("Question: 1+1?" in g) == few and ("1+1=2\n" in g) == (few and cot)
            assert g.endswith(COT_TRIGGER) == (cot and not few)


def test_eval_max_new_tokens_caps_and_never_raises(bbh_dir):
    from instructkit.eval.cli import load_sets
    from instructkit.config.eval import EvalConfig
    for fmt, want in (("few_shot", 32), ("few_shot_cot", 128)):  # direct BBH keeps its 32, CoT's 256 is capped
        (es,) = load_sets(EvalConfig(tasks=["bbh:toy"], fmt=fmt, max_new_tokens=128, data_dir=str(bbh_dir)))
        assert {it.max_new_tokens for it in es.items} == {want}
