"""Position-swap rules: MT-Bench's ``agree`` vs Balanced Position Calibration (``calibrated``).

The scripted judge scores the verdict options like a small local model does: a strong constant
position bias towards "A" plus a small real preference for the longer answer, so the argmax letter
is "A" in both orders (the orders never agree) while the averaged log-odds keep the preference.
"""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import pytest

from instructkit.errors import ConfigError
from instructkit.lm.api import GenerateResult, LoglikelihoodResult
from instructkit.judging.io import AnswerSet, Question
from instructkit.judging.run import run_judge
from instructkit.judging.swap import calibrated_margin, check_swap, order_margin

ANS = re.compile(r"\[The Start of Assistant ([AB])'s Answer\]\n(.*?)\n\[The End of Assistant \1's Answer\]", re.S)
FMT = lambda msgs: "\n".join(m["content"] for m in msgs) + "\nassistant: "  # noqa: E731


class BiasedLogprobJudge:
    """logP(A) = -1 + bias + d/2, logP(B) = -1 - d/2, logP(C) = -9 with d = pref * (len(A) - len(B)):
    per order ``logP(A) - logP(B) = bias + d``, so the argmax is "A" whenever bias > |d|."""

    name = "biased-logprob"

    def __init__(self, bias: float = 3.0, pref: float = 0.05):
        self.bias, self.pref, self.calls = bias, pref, 0
        self.renderer = SimpleNamespace(prompt_text=FMT)  # what synth preferences reads off a local judge

    def generate(self, reqs):  # the policy role is played by another object; the judge only scores
        raise AssertionError("a log-prob judge is never asked to generate")

    def loglikelihood(self, reqs):
        self.calls += len(reqs)
        out = []
        for r in reqs:
            a = dict(ANS.findall(r.context))
            d = self.pref * (len(a["A"]) - len(a["B"]))
            lp = {"A": -1.0 + self.bias + d / 2, "B": -1.0 - d / 2, "C": -9.0}[r.continuation[:-2]]
            out.append(LoglikelihoodResult(lp, False, 1, len(r.continuation)))
        return out


def _data():
    qs = [Question(f"q{i}", [f"Question {i}?"]) for i in range(6)]
    # "long" is 10*(i+1) characters longer than "short" on question i; one question has equal lengths
    ans = AnswerSet({"long": {q.id: ["x" * (20 + 10 * i)] for i, q in enumerate(qs)},
                     "short": {q.id: ["y" * 20] for q in qs}})
    ans.answers["long"]["q0"] = ["z" * 20]  # q0: same length -> no real preference -> a tie under both rules
    return qs, ans


def _run(tmp_path, swap, **kw):
    qs, ans = _data()
    return run_judge(qs, ans, BiasedLogprobJudge(), mode="pairwise", out=tmp_path / swap, rounds=20,
                     progress=False, verdict="logprob", chat_format=FMT, swap=swap, **kw)


def _verdicts(tmp_path, swap):
    return [json.loads(x) for x in (tmp_path / swap / "verdicts.jsonl").read_text().splitlines()]


def test_agree_turns_a_position_biased_judge_into_ties(tmp_path):
    s = _run(tmp_path, "agree")
    assert s["swap"] == "agree" and s["errors"] == {}
    assert s["stats"]["matches"] == 6 and s["stats"]["inconsistent"] == 6
    assert {v["winner"] for v in _verdicts(tmp_path, "agree")} == {"tie"}
    assert all(v["verdict_ab"] == v["verdict_ba"] == "A" for v in _verdicts(tmp_path, "agree"))


def test_calibrated_recovers_the_real_preference(tmp_path):
    s = _run(tmp_path, "calibrated")
    assert s["swap"] == "calibrated" and s["errors"] == {}
    rows = {v["question_id"]: v for v in _verdicts(tmp_path, "calibrated")}
    # the pair is (long, short): model_a = "long" in the first order
    assert rows["q0"]["winner"] == "tie" and rows["q0"]["margin"] == pytest.approx(0.0)
    for i in range(1, 6):
        v = rows[f"q{i}"]
        assert v["model_a"] == "long" and v["winner"] == "model_a"
        assert v["margin"] == pytest.approx(0.05 * 10 * i)   # the bias (3.0) is gone: margin = d
        assert v["consistent"] is False                      # letters still disagree (both say "A")
    st = s["stats"]
    assert st["inconsistent"] == 6 and st["calibrated_ties"] == 1 and st["decided_by_calibration"] == 5
    assert s["battles"] == 6 and [r["model"] for r in s["leaderboard"]][0] == "long"


def test_tie_margin_turns_small_margins_into_ties(tmp_path):
    s = _run(tmp_path, "calibrated", tie_margin=1.0)   # margins are 0, .5, 1.0, 1.5, 2.0, 2.5
    assert s["tie_margin"] == 1.0 and s["stats"]["calibrated_ties"] == 3
    assert [v["winner"] for v in _verdicts(tmp_path, "calibrated")].count("model_a") == 3


def test_averaged_margin_by_hand():
    # order 1 (X in A): logP(A)=-0.2, logP(B)=-2.5 -> m1 = 2.3; order 2 (Y in A): logP(A)=-0.4,
    # logP(B)=-2.1 -> m2 = 1.7. Both orders say "A" (pure position bias under agree: a tie), but
    # X's margin = (m1 - m2) / 2 = (2.3 - 1.7) / 2 = 0.3 > 0: X wins. "C" is not used.
    m1, _ = order_margin({"A": -0.2, "B": -2.5, "C": -4.0})
    m2, _ = order_margin({"A": -0.4, "B": -2.1, "C": -0.1})
    assert m1 == pytest.approx(2.3) and m2 == pytest.approx(1.7)
    assert calibrated_margin(m1, m2) == pytest.approx(0.3)
    assert order_margin({"A": -1.0}) == (None, "no_logprobs")
    assert order_margin({"A": float("-inf"), "B": float("-inf")}) == (None, "nonfinite_logprobs")


def test_missing_logprobs_are_errors_not_ties(tmp_path):
    qs, ans = _data()
    kw = dict(mode="pairwise", rounds=20, progress=False, verdict="logprob", chat_format=FMT, swap="calibrated")
    run_judge(qs, ans, BiasedLogprobJudge(), out=tmp_path / "c", **kw)
    # a cache whose records lost their log-probs (e.g. written by hand): counted as errors, never ties
    f = tmp_path / "c" / "judgments.jsonl"
    recs = [json.loads(x) for x in f.read_text().splitlines()]
    f.write_text("".join(json.dumps({k: v for k, v in r.items() if k != "logprobs"}) + "\n" for r in recs))
    s = run_judge(qs, ans, BiasedLogprobJudge(), out=tmp_path / "c", **kw)
    assert s["judge_calls_new"] == 0 and s["errors"] == {"no_logprobs": 12} and s["battles"] == 0


def test_calibrated_needs_logprob_verdicts():
    check_swap("agree", "generate")
    with pytest.raises(ConfigError, match="verdict=logprob"):
        check_swap("calibrated", "generate")
    with pytest.raises(ConfigError, match="unknown swap"):
        check_swap("majority", "logprob")
    with pytest.raises(ConfigError, match="tie_margin"):
        check_swap("calibrated", "logprob", -0.1)


def test_configs_expose_swap_and_reject_calibrated_generate():
    from pydantic import ValidationError

    from instructkit.synth.preferences import PreferencesConfig
    from instructkit.eval.winrate import WinRateConfig

    for cls in (PreferencesConfig, WinRateConfig):
        assert cls(prompts="p.jsonl").swap == "agree"                   # MT-Bench stays the default
        assert "Wang et al. 2023" in cls.model_fields["swap"].description
        assert cls(prompts="p.jsonl", swap="calibrated", verdict="logprob").swap == "calibrated"
        with pytest.raises(ValidationError, match="verdict=logprob"):
            cls(prompts="p.jsonl", swap="calibrated", verdict="generate")
    # a reward-model ranker has no judge: the judge's swap rule is not checked
    PreferencesConfig(prompts="p.jsonl", ranker="reward", swap="calibrated", verdict="generate")


class Policy:
    name = "policy"

    def __init__(self, answers):
        self.answers = answers

    def generate(self, reqs):
        return [GenerateResult(texts=list(self.answers[r.messages[-1]["content"]][:r.n]), n_tokens=[1] * r.n)
                for r in reqs]


def test_preferences_calibrated_writes_pairs_where_agree_writes_none(tmp_path, monkeypatch):
    import instructkit.lm.backends as jc
    from instructkit.synth.preferences import PreferencesConfig, run_preferences

    answers = {"Explain rain.": ["Water falls.", "Clouds release water drops when heavy.", "Rain."]}
    (tmp_path / "p.jsonl").write_text(json.dumps({"prompt": "Explain rain."}) + "\n")
    monkeypatch.setattr(jc, "make_backend", lambda ref, **k: Policy(answers) if ref == "policy" else BiasedLogprobJudge())
    base = dict(prompts=str(tmp_path / "p.jsonl"), model="policy", judge="judge", n=3, verdict="logprob")
    agree = run_preferences(PreferencesConfig(**base), tmp_path / "agree")
    assert agree["pairs"] == 0 and agree["counts"]["tied_inconsistent"] == 3
    cal = run_preferences(PreferencesConfig(**base, swap="calibrated"), tmp_path / "cal")
    c = cal["counts"]
    assert cal["pairs"] == c["pairs_written"] == c["decided_by_calibration"] == 3 and c.get("tied", 0) == 0
    rows = [json.loads(x) for x in open(cal["data"])]
    assert all(len(r["chosen"]) > len(r["rejected"]) for r in rows)
    assert json.loads((tmp_path / "cal" / "report.json").read_text())["config"]["swap"] == "calibrated"
