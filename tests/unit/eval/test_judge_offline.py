"""The whole judge path offline, with a scripted judge whose verdicts follow a known rule."""

from __future__ import annotations

import json
import random
import re

import numpy as np
import pytest

from instructkit.lm.api import GenerateResult
from instructkit.judging.judge import (GameBuilder, load_judge_prompts, make_pairs, parse_pair_verdict,
                                    parse_rating)
from instructkit.judging.io import AnswerSet, Question
from instructkit.judging.run import run_judge

QUALITY = re.compile(r"quality=(-?\d+\.\d+)")
STRENGTH = {"m0": 3.0, "m1": 2.0, "m2": 1.0, "m3": 0.0}   # true order m0 > m1 > m2 > m3


class ScriptedJudge:
    """Reads the hidden quality of each answer from the prompt and answers by a fixed rule.

    pairwise: with probability ``bias`` (decided by a hash of the prompt) it says "[[A]]" whatever the
    answers, else it picks the answer with the higher quality. single: rating 5 + quality, clipped.
    ``mute`` models get an unparseable output.
    """

    name = "scripted"

    def __init__(self, bias: float = 0.0, always_a: bool = False, mute: tuple[str, ...] = ()):
        self.bias, self.always_a, self.mute = bias, always_a, mute
        self.calls = 0

    def loglikelihood(self, requests):  # pragma: no cover - the judge only generates
        raise NotImplementedError

    def _one(self, text: str) -> str:
        if any(f"model={m} " in text for m in self.mute):
            return "I think both are fine, hard to say."
        q = [float(x) for x in QUALITY.findall(text)]
        if "Assistant B" in text:          # pairwise (single-turn prompt: A's answer comes first)
            if self.always_a or random.Random(text).random() < self.bias:
                return "Explanation... A looks better. [[A]]"
            return "Verdict: " + ("[[A]]" if q[0] > q[1] else "[[B]]" if q[1] > q[0] else "[[C]]")
        score = min(10.0, max(1.0, round(5 + q[-1], 1)))
        return f"The answer is ok. Rating: [[{score}]]"

    def generate(self, requests):
        self.calls += len(requests)
        return [GenerateResult([self._one(r.messages[-1]["content"])], [1]) for r in requests]


def make_data(n_q: int, seed: int = 0, models=STRENGTH) -> tuple[list[Question], AnswerSet]:
    rng = np.random.default_rng(seed)
    qs = [Question(f"q{i}", [f"Question number {i}?"]) for i in range(n_q)]
    ans = AnswerSet({m: {q.id: [f"answer model={m} quality={s + rng.normal():.3f} end"] for q in qs}
                     for m, s in models.items()})
    return qs, ans


# -- parsing ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text,score", [("[[8]]", 8.0), ("Rating: [[8.5]]", 8.5), ("fine. Rating: [[ 3 ]]", 3.0),
                                        ("Rating: [7]", 7.0), ('e.g. "Rating: [[5]]" ... Rating: [[9]]', 9.0),
                                        ("[[10]]", 10.0), ("[[1]]", 1.0)])
def test_parse_rating(text, score):
    assert parse_rating(text) == (score, None)


@pytest.mark.parametrize("text,reason", [("no rating here", "no_verdict"), ("Rating: 8", "no_verdict"),
                                         ("[[11]]", "out_of_range"), ("[[0]]", "out_of_range"), ("", "no_verdict")])
def test_parse_rating_errors(text, reason):
    assert parse_rating(text) == (None, reason)


@pytest.mark.parametrize("text,verdict", [("[[A]]", "A"), ("so [[B]]", "B"), ("[[C]]", "C"), ("[[ B ]]", "B"),
                                          ("first [[A]] then on reflection [[B]]", "B")])
def test_parse_pair(text, verdict):
    assert parse_pair_verdict(text) == (verdict, None)


@pytest.mark.parametrize("text,reason", [("A is better", "no_verdict"), ("[A]", "no_verdict"), ("[[D]]", "no_verdict"),
                                         ('"[[A]]" if A is better, "[[B]]" if B, "[[C]]" for a tie', "echoed_format")])
def test_parse_pair_errors(text, reason):
    assert parse_pair_verdict(text) == (None, reason)


# -- pairwise ----------------------------------------------------------------------------------------------
def test_true_order_recovered_despite_position_bias(tmp_path):
    qs, ans = make_data(60)
    judge = ScriptedJudge(bias=0.3)
    s = run_judge(qs, ans, judge, mode="pairwise", out=tmp_path, rounds=100, progress=False)
    assert judge.calls == 6 * 60 * 2                      # all pairs, both orders
    assert [r["model"] for r in s["leaderboard"]] == ["m0", "m1", "m2", "m3"]
    assert sorted(s["leaderboard"], key=lambda r: -r["elo"])[0]["model"] == "m0"
    assert s["errors"] == {}
    assert s["stats"]["inconsistent"] > 0                 # the bias did flip some orders -> ties
    for f in ("verdicts.jsonl", "battles.jsonl", "summary.json", "leaderboard.md", "leaderboard.png",
              "ratings.json", "judgments.jsonl"):
        assert (tmp_path / f).stat().st_size > 0


def test_always_a_judge_gives_only_ties(tmp_path):
    qs, ans = make_data(10)
    s = run_judge(qs, ans, ScriptedJudge(always_a=True), mode="pairwise", out=tmp_path, rounds=20, progress=False)
    battles = [json.loads(x) for x in (tmp_path / "battles.jsonl").read_text().splitlines()]
    assert len(battles) == 60 and {b["winner"] for b in battles} == {"tie"}
    assert s["stats"]["inconsistent"] == 60
    assert all(r["win_rate"] == 0.5 for r in s["leaderboard"])
    # without the swap, the first-listed model would have won all 60 games
    assert all(r["rating"] == pytest.approx(1000, abs=1e-6) for r in s["leaderboard"])


def test_unparseable_pairwise_verdicts_are_counted_not_dropped(tmp_path):
    qs, ans = make_data(5)
    s = run_judge(qs, ans, ScriptedJudge(mute=("m3",)), mode="pairwise", out=tmp_path, rounds=20,
                  progress=False, baseline="m0")
    rows = [json.loads(x) for x in (tmp_path / "verdicts.jsonl").read_text().splitlines()]
    assert len(rows) == 3 * 5                             # every match is reported
    bad = [r for r in rows if r["error"]]
    assert len(bad) == 5 and {r["model_a"] for r in bad} == {"m3"}
    assert s["errors"] == {"no_verdict": 10}              # both orders of 5 matches
    assert s["battles"] == 10 and s["stats"]["error_matches"] == 5
    assert {r["model"] for r in s["leaderboard"]} == {"m0", "m1", "m2"}


def test_baseline_pairs():
    assert make_pairs(["b", "a", "c"], "b") == [("a", "b"), ("c", "b")]
    assert make_pairs(["b", "a", "c"]) == [("a", "b"), ("a", "c"), ("b", "c")]


# -- single grading ---------------------------------------------------------------------------------------
def test_single_grading_scores_and_errors(tmp_path):
    qs, ans = make_data(30)
    s = run_judge(qs, ans, ScriptedJudge(mute=("m2",)), mode="single", out=tmp_path, rounds=50, progress=False)
    scores = {r["model"]: r for r in s["scores"]}
    assert scores["m2"]["graded"] == 0 and scores["m2"]["errors"] == 30
    assert s["errors"] == {"no_verdict": 30}
    assert [r["model"] for r in s["scores"] if r["graded"]] == ["m0", "m1", "m3"]
    assert scores["m0"]["mean"] == pytest.approx(8.0, abs=0.6)       # 5 + strength 3 + noise
    assert scores["m0"]["ci_low"] < scores["m0"]["mean"] < scores["m0"]["ci_high"]
    # battles derived from scores leave out the model without a parsed score
    assert [r["model"] for r in s["leaderboard"]] == ["m0", "m1", "m3"]
    assert "m2" in (tmp_path / "scores.md").read_text()


# -- resume from the cache ----------------------------------------------------------------------------------
def test_resume_asks_nothing_twice(tmp_path):
    qs, ans = make_data(8)
    j1 = ScriptedJudge(bias=0.2)
    s1 = run_judge(qs, ans, j1, mode="pairwise", out=tmp_path, rounds=20, progress=False)
    j2 = ScriptedJudge(bias=0.2)
    s2 = run_judge(qs, ans, j2, mode="pairwise", out=tmp_path, rounds=20, progress=False)
    assert j1.calls == 96 and j2.calls == 0 and s2["judge_calls_new"] == 0
    assert s1["leaderboard"] == s2["leaderboard"]
    # a line cut by a crash is reported and that one game is asked again
    cache = tmp_path / "judgments.jsonl"
    lines = cache.read_text().splitlines()
    cache.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:20] + "\n")
    j3 = ScriptedJudge(bias=0.2)
    s3 = run_judge(qs, ans, j3, mode="pairwise", out=tmp_path, rounds=20, progress=False)
    assert j3.calls == 1 and s3["cache_unreadable_lines"] == 1
    # a different generation budget is a different question to the judge
    j4 = ScriptedJudge(bias=0.2)
    run_judge(qs[:1], ans, j4, mode="pairwise", out=tmp_path, rounds=20, progress=False, max_new_tokens=7)
    assert j4.calls == 12


# -- prompts: references and multi-turn --------------------------------------------------------------------
def test_reference_and_multi_turn_prompts():
    qs = [Question("1", ["Write a poem.", "Now shorter."], "writing"),
          Question("2", ["What is 2+2?", "And 3+3?"], "math"),
          Question("3", ["Solve x+1=2."], "math")]           # no reference given: general prompt, counted
    ans = AnswerSet({"x": {q: [f"x-{q}-1", f"x-{q}-2"] for q in "123"},
                     "y": {q: [f"y-{q}-1", f"y-{q}-2"] for q in "123"}})
    refs = {"2": ["REF-FOUR", "REF-SIX"]}
    b = GameBuilder("single", load_judge_prompts(), refs)
    games = b.single(qs, ans)
    names = {(g.question_id, g.turn, g.models[0]): g for g in games}
    assert len(games) == 2 * (2 + 2 + 1)
    assert names[("1", 1, "x")].prompt_name == "single-v1"
    assert names[("1", 2, "x")].prompt_name == "single-v1-multi-turn"
    assert names[("2", 1, "x")].prompt_name == "single-math-v1"
    g = names[("2", 2, "y")]
    assert g.prompt_name == "single-math-v1-multi-turn"
    for s in ("REF-FOUR", "REF-SIX", "y-2-1", "y-2-2", "What is 2+2?", "And 3+3?"):
        assert s in g.user
    assert "REF-FOUR" in names[("2", 1, "x")].user and "x-2-1" in names[("2", 1, "x")].user
    assert names[("3", 1, "x")].prompt_name == "single-v1"
    assert b.stats["reference_category_without_reference"] == 2

    pb = GameBuilder("pairwise", load_judge_prompts(), refs)
    matches = pb.pairwise(qs, ans, [("x", "y")])
    g1, g2 = next(m for m in matches if m[0].question_id == "2" and m[0].turn == 2)
    assert g1.prompt_name == g2.prompt_name == "pair-math-v1-multi-turn"
    assert g1.models == ("x", "y") and g2.models == ("y", "x")
    # position A holds x's second answer in game 1 and y's in game 2
    assert g1.user.index("x-2-2") < g1.user.index("y-2-2")
    assert g2.user.index("y-2-2") < g2.user.index("x-2-2")
    assert g1.system.startswith("Please act as an impartial judge")


def test_custom_prompt_file_missing_name_is_a_clear_error(tmp_path):
    from instructkit.errors import ConfigError
    f = tmp_path / "p.jsonl"
    f.write_text(json.dumps({"name": "single-v1", "type": "single", "system_prompt": "",
                             "prompt_template": "Q: {question}\nA: {answer}\nGrade [[n]]."}) + "\n")
    prompts = load_judge_prompts(f)
    games = GameBuilder("single", prompts).single([Question("1", ["hi"])], AnswerSet({"m": {"1": ["yo"]}}))
    assert games[0].user == "Q: hi\nA: yo\nGrade [[n]]." and games[0].system == ""
    with pytest.raises(ConfigError, match="pair-v2"):
        GameBuilder("pairwise", prompts).pairwise([Question("1", ["hi"])], AnswerSet({"m": {"1": ["a"]},
                                                                                      "n": {"1": ["b"]}}),
                                                  [("m", "n")])


def test_shipped_prompts_match_fastchat_schema():
    prompts = load_judge_prompts()
    assert len(prompts) == 8
    assert prompts["pair-v2"].output_format == "[[A]]" and prompts["single-v1"].output_format == "[[rating]]"
    assert "{ref_answer_1}" in prompts["single-math-v1"].prompt_template


class LogprobJudge(ScriptedJudge):
    """Scores verdict options: in pairwise the higher-quality side's letter is most likely, plus a bias to A."""

    def loglikelihood(self, requests):
        from instructkit.lm.api import LoglikelihoodResult
        self.calls += len(requests)
        out = []
        for r in requests:
            q = [float(x) for x in QUALITY.findall(r.context)]
            opt = r.continuation[:-2]
            if "Final verdict: [[" in r.context:
                lp = {"A": q[0] - q[1] + self.bias, "B": q[1] - q[0], "C": -5.0}[opt]
            else:
                lp = -abs(float(opt) - (5 + q[-1]))
            out.append(LoglikelihoodResult(lp, False, 1, len(r.continuation)))
        return out


def test_logprob_verdicts(tmp_path):
    qs, ans = make_data(40)
    judge = LogprobJudge(bias=0.5)
    fmt = lambda msgs: "\n".join(m["content"] for m in msgs) + "\nassistant: "  # noqa: E731
    s = run_judge(qs, ans, judge, mode="pairwise", out=tmp_path / "p", rounds=50, progress=False,
                  verdict="logprob", chat_format=fmt)
    assert judge.calls == 6 * 40 * 2 * 3                  # 3 options per game
    assert s["errors"] == {} and [r["model"] for r in s["leaderboard"]] == ["m0", "m1", "m2", "m3"]
    rec = json.loads((tmp_path / "p" / "judgments.jsonl").read_text().splitlines()[0])
    assert set(rec["logprobs"]) == {"A", "B", "C"} and rec["output"].endswith("]]")
    s = run_judge(qs, ans, LogprobJudge(), mode="single", out=tmp_path / "s", rounds=50, progress=False,
                  verdict="logprob", chat_format=fmt)
    assert s["errors"] == {} and [r["model"] for r in s["scores"]] == ["m0", "m1", "m2", "m3"]
    with pytest.raises(Exception, match="chat_format"):
        run_judge(qs, ans, judge, mode="single", out=tmp_path / "x", progress=False, verdict="logprob")
