"""Reading questions and answers in the formats the judge accepts; bad input names file, line, field."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from instructkit.errors import DataError
from instructkit.judging.io import load_answers, load_questions, load_references


def _jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


@pytest.fixture()
def self_instruct(tmp_path):
    q = _jsonl(tmp_path / "q.jsonl", [
        {"id": "t0", "instruction": "Fix the grammar.", "instances": [{"input": "he go home", "output": "He goes home."}]},
        {"id": "t1", "instruction": "Write a haiku.", "instances": [{"input": "", "output": "..."}]},
    ])
    pred = tmp_path / "pred"
    pred.mkdir()
    _jsonl(pred / "good_predictions.jsonl", [{"instruction": "Fix the grammar.\n", "input": "he go home",
                                              "response": " He goes home."},
                                             {"instruction": "Write a haiku.", "input": "", "response": ""}])
    return q, pred


def test_self_instruct_questions_and_id_less_predictions(self_instruct):
    q, pred = self_instruct
    qs = load_questions(q)
    assert [x.id for x in qs] == ["t0", "t1"]
    assert qs[0].turns == ["Fix the grammar.\n\nhe go home"] and qs[1].turns == ["Write a haiku."]
    ans = load_answers([pred], qs)
    assert ans.models == ["good"]
    assert ans.answers["good"] == {"t0": [" He goes home."], "t1": [""]}
    assert ans.stats["empty_answers"] == 1            # kept and graded, but reported


def test_misaligned_predictions_are_an_error(self_instruct, tmp_path):
    q, _ = self_instruct
    bad = _jsonl(tmp_path / "bad.jsonl", [{"instruction": "Write a haiku.", "input": "", "response": "x"}])
    with pytest.raises(DataError, match=r"bad.jsonl:1: field 'instruction'.*question order"):
        load_answers([bad], load_questions(q))


def test_mt_bench_formats(tmp_path):
    q = _jsonl(tmp_path / "question.jsonl", [
        {"question_id": 81, "category": "writing", "turns": ["Write.", "Rewrite."]},
        {"question_id": 111, "category": "math", "turns": ["2+2?", "3+3?"]},
        {"question_id": 112, "category": "math", "turns": ["4+4?", "5+5?"]}])
    a = _jsonl(tmp_path / "vicuna.jsonl", [
        {"question_id": 81, "model_id": "vicuna-13b", "choices": [{"index": 0, "turns": ["W", "R"]}]},
        {"question_id": 111, "model_id": "vicuna-13b", "choices": [{"index": 0, "turns": ["4", "6"]}]},
        {"question_id": 999, "model_id": "vicuna-13b", "choices": [{"index": 0, "turns": ["?", "?"]}]}])
    r = _jsonl(tmp_path / "ref.jsonl", [{"question_id": 111, "choices": [{"turns": ["4", "6"]}]}])
    qs = load_questions(q)
    assert qs[0].id == "81" and qs[1].category == "math"
    ans = load_answers([a], qs)
    assert ans.answers == {"vicuna-13b": {"81": ["W", "R"], "111": ["4", "6"]}}
    assert ans.stats["answers_to_other_questions"] == 1
    assert ans.stats["missing_answers[vicuna-13b]"] == 1
    assert load_references(r) == {"111": ["4", "6"]}
    assert [x.id for x in load_questions(q, limit=2)] == ["81", "111"]


@pytest.mark.parametrize("rows,match", [
    (['{"question_id": 1, "turns": ["a"]}', "{oops"], r":2: invalid JSON"),
    ([{"question_id": 1, "turns": ["a"]}, {"question_id": 1, "turns": ["b"]}], r":2: field 'question_id'.*duplicate"),
    ([{"question_id": 1, "turns": 5}], r":1: field 'turns'"),
    ([{"question_id": 1, "category": "x"}], r":1: field 'turns'.*no question text"),
])
def test_bad_questions(tmp_path, rows, match):
    with pytest.raises(DataError, match=match):
        load_questions(_jsonl(tmp_path / "q.jsonl", rows))


def test_bad_answers(tmp_path):
    qs = load_questions(_jsonl(tmp_path / "q.jsonl", [{"question_id": 1, "turns": ["a"]}]))
    dup = _jsonl(tmp_path / "m.jsonl", [{"question_id": 1, "answer": "x"}, {"question_id": 1, "answer": "y"}])
    with pytest.raises(DataError, match=r"m.jsonl:2: field 'question_id'.*second answer"):
        load_answers([dup], qs)
    none = _jsonl(tmp_path / "n.jsonl", [{"question_id": 1, "score": 3}])
    with pytest.raises(DataError, match=r"n.jsonl:1: field 'answer'"):
        load_answers([none], qs)
    with pytest.raises(DataError, match="no such file"):
        load_answers([tmp_path / "absent"], qs)


def test_judge_cli_end_to_end_with_scripted_backend(tmp_path, monkeypatch, self_instruct):
    """``instructkit eval judge`` with the backend factory swapped for a scripted judge."""
    from instructkit.lm import backends as judge_cli
    from instructkit.lm.api import GenerateResult
    from instructkit.eval.cli import app

    q, pred = self_instruct
    _jsonl(pred / "other_predictions.jsonl", [{"instruction": "Fix the grammar.", "input": "he go home",
                                               "response": "he go home"},
                                              {"instruction": "Write a haiku.", "input": "", "response": "Leaves"}])

    class Judge:
        name = "scripted"

        def generate(self, reqs):  # prefers the answer that has an uppercase first letter, else tie
            out = []
            for r in reqs:
                text = r.messages[-1]["content"]
                a = text.split("[The Start of Assistant A's Answer]\n")[1][:2].strip()[:1]
                b = text.split("[The Start of Assistant B's Answer]\n")[1][:2].strip()[:1]
                v = "C" if a.isupper() == b.isupper() else "A" if a.isupper() else "B"
                out.append(GenerateResult([f"[[{v}]]"], [1]))
            return out

    monkeypatch.setattr(judge_cli, "make_backend", lambda ref, **kw: Judge())
    res = CliRunner().invoke(app, ["judge", "--questions", str(q), "--answers", str(pred), "--judge", "x",
                                   "--mode", "pairwise", "--out", str(tmp_path / "out"), "--bootstrap", "20"])
    assert res.exit_code == 0, res.output
    battles = [json.loads(x) for x in (tmp_path / "out" / "battles.jsonl").read_text().splitlines()]
    # t0: good's " He goes home." beats "he go home" in both orders; t1: "" vs "Leaves": other wins
    assert [(b["question_id"], b["winner"]) for b in battles] == [("t0", "model_a"), ("t1", "model_b")]
    assert "all judge verdicts parsed" in res.output
    assert (tmp_path / "out" / "leaderboard.png").is_file()
