"""`synth preferences` (sample -> judge with position swap -> pairs, everything counted) and the win rate."""

from __future__ import annotations

import json
import re

import pytest

from instructkit.lm.api import GenerateResult
from instructkit.synth.preferences import PreferencesConfig, read_prompts, run_preferences
from instructkit.eval.winrate import WinRateConfig, run_winrate, win_rate

ANS = re.compile(r"\[The Start of Assistant ([AB])'s Answer\]\n(.*?)\n\[The End of Assistant \1's Answer\]", re.S)


class Policy:
    """Scripted sampler: per prompt, answers of different lengths (one duplicate, one tie pair)."""

    name = "policy"

    def __init__(self, answers):
        self.answers = answers

    def generate(self, reqs):
        return [GenerateResult(texts=list(self.answers[r.messages[-1]["content"]][:r.n]),
                               n_tokens=[1] * r.n) if r.n > 1 else
                GenerateResult(texts=[self.answers[r.messages[-1]["content"]]], n_tokens=[1]) for r in reqs]


class LengthJudge:
    """Prefers the longer answer whatever its position; equal lengths -> [[C]]."""

    name = "length-judge"

    def generate(self, reqs):
        out = []
        for r in reqs:
            a = dict(ANS.findall(r.messages[-1]["content"]))
            v = "A" if len(a["A"]) > len(a["B"]) else "B" if len(a["B"]) > len(a["A"]) else "C"
            out.append(GenerateResult(texts=[f"Explanation. [[{v}]]"], n_tokens=[3]))
        return out


class PositionJudge:
    """Always says A: the position swap must turn every verdict into an (inconsistent) tie."""

    name = "position-judge"

    def generate(self, reqs):
        return [GenerateResult(texts=["[[A]]"], n_tokens=[1]) for _ in reqs]


def _prompts(tmp_path):
    f = tmp_path / "prompts.jsonl"
    f.write_text(json.dumps({"id": "p1", "instruction": "Explain rain.", "instances": [{"input": ""}]}) + "\n"
                 + json.dumps({"prompt": "Name a fruit."}) + "\n" + "{broken\n" + json.dumps({"other": 1}) + "\n")
    return f


ANSWERS = {"Explain rain.": ["Water falls.", "Clouds release water drops when they get heavy.", "Water falls.", "Rain."],
           "Name a fruit.": ["Apple", "Pear.", "A ripe mango"]}


def test_judge_ranked_pairs_with_counts(tmp_path, monkeypatch):
    import instructkit.lm.backends as jc
    monkeypatch.setattr(jc, "make_backend", lambda ref, **k: Policy(ANSWERS) if ref == "policy" else LengthJudge())
    prompts, skipped = read_prompts(str(_prompts(tmp_path)))
    assert [p for _, p in prompts] == ["Explain rain.", "Name a fruit."]
    assert dict(skipped) == {"invalid_json": 1, "missing_field": 1}
    cfg = PreferencesConfig(prompts=str(tmp_path / "prompts.jsonl"), model="policy", judge="judge", n=4,
                            verdict="generate")
    res = run_preferences(cfg, tmp_path / "out")
    c = res["counts"]
    # prompt 1: 4 samples, one duplicate -> 3 distinct -> 3 pairs; prompt 2: 3 samples -> 3 pairs ("Apple" vs
    # "Pear." have equal length: a tie, counted, no pair)
    assert c["samples"] == 7 and c["dropped_identical_or_empty"] == 1 and c["candidate_pairs"] == 6
    assert c["tied"] == 1 and c["pairs_written"] == 5 == res["pairs"]
    rows = [json.loads(x) for x in open(res["data"])]
    assert all(len(r["chosen"]) > len(r["rejected"]) for r in rows)
    # the written file is what train.objective=dpo reads
    from instructkit.data.preference import read_preferences
    assert len(list(read_preferences(res["data"]))) == 5
    # rerun on the same folder: samples and judge verdicts come from the caches
    monkeypatch.setattr(jc, "make_backend", lambda ref, **k: (_ for _ in ()).throw(AssertionError("no call")) if
                        ref == "policy" else LengthJudge())
    assert run_preferences(cfg, tmp_path / "out")["pairs"] == 5


def test_position_biased_judge_yields_ties_not_pairs(tmp_path, monkeypatch):
    import instructkit.lm.backends as jc
    monkeypatch.setattr(jc, "make_backend", lambda ref, **k: Policy(ANSWERS) if ref == "policy" else PositionJudge())
    cfg = PreferencesConfig(prompts=str(_prompts(tmp_path)), model="policy", judge="judge", n=3, verdict="generate")
    res = run_preferences(cfg, tmp_path / "out")
    assert res["pairs"] == 0 and res["counts"]["tied_inconsistent"] == res["counts"]["candidate_pairs"] == 4


def test_win_rate_and_bootstrap_ci(tmp_path, monkeypatch):
    r = win_rate([1, 1, 0.5, 0], rounds=2000)
    assert r["win_rate"] == pytest.approx(0.625) and 0 <= r["ci_low"] < 0.625 < r["ci_high"] <= 1
    import instructkit.lm.backends as jc
    answers = {"tuned": {"Explain rain.": "Clouds release water drops.", "Name a fruit.": "A ripe mango"},
               "base": {"Explain rain.": "Rain.", "Name a fruit.": "A ripe mango"}}
    monkeypatch.setattr(jc, "make_backend", lambda ref, **k: Policy(answers[ref]) if ref in answers else LengthJudge())
    res = run_winrate(WinRateConfig(prompts=str(_prompts(tmp_path)), verdict="generate"), tmp_path / "w",
                      "tuned", "base")
    out = json.loads(open(res["results"]).read())
    assert out["counts"] == {"win": 1, "tie": 1, "loss": 0, "error": 0}
    assert out["win_rate"] == pytest.approx(0.75)
