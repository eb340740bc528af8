"""The judge path end to end on real data (self-instruct answers of 8 models) with SmolLM2 as a local judge.

Kept tiny for CI (2 instructions x 3 models pairwise, 1 generated verdict); the slow test is the moderate run.

SmolLM2-135M is a weak judge: these tests check the path (verdicts parsed or counted as errors, ratings,
CIs, leaderboard and plot written), not the quality of its opinions.
"""

from __future__ import annotations

import json

import pytest

from instructkit.judging.io import load_answers, load_questions
from instructkit.judging.run import run_judge

pytestmark = [pytest.mark.integration, pytest.mark.shared]
MODELS = ["text-davinci-003", "text-davinci-001", "davinci-t0-ft"]


@pytest.fixture(scope="module")
def smol_judge(smollm2_model, smollm2_tokenizer):
    from instructkit.lm.hf import HFModel
    return HFModel(smollm2_model, smollm2_tokenizer, batch_size=8, progress=False)


def _data(shared_data, n, models=MODELS):
    d = shared_data / "self_instruct"
    qs = load_questions(d / "user_oriented_instructions.jsonl", limit=n)
    files = [d / "predictions" / f"{m}_predictions.jsonl" for m in models] if models else [d / "predictions"]
    return qs, load_answers(files, qs)


def test_pairwise_logprob_judge_on_real_answers(shared_data, smol_judge, tmp_path):
    qs, ans = _data(shared_data, 2)
    s = run_judge(qs, ans, smol_judge, mode="pairwise", out=tmp_path, baseline="text-davinci-003", rounds=100,
                  progress=False, verdict="logprob", chat_format=smol_judge.renderer.prompt_text)
    assert s["stats"]["matches"] == 2 * 2 and s["errors"] == {}   # constrained verdicts always parse
    assert s["battles"] == 4
    lb = {r["model"]: r for r in s["leaderboard"]}
    assert set(lb) == set(MODELS) and lb["text-davinci-003"]["rating"] == pytest.approx(1000)  # the anchor
    for r in lb.values():
        assert r["ci_low"] <= r["rating"] <= r["ci_high"]
    assert (tmp_path / "leaderboard.png").stat().st_size > 5000
    assert (tmp_path / "leaderboard.md").read_text().count("|\n") == 2 + 3
    # resume: nothing is asked twice
    s2 = run_judge(qs, ans, smol_judge, mode="pairwise", out=tmp_path, baseline="text-davinci-003", rounds=100,
                   progress=False, verdict="logprob", chat_format=smol_judge.renderer.prompt_text)
    assert s2["judge_calls_new"] == 0 and s2["leaderboard"] == s["leaderboard"]


def test_generated_verdicts_are_parsed_or_counted(shared_data, smol_judge, tmp_path):
    qs, ans = _data(shared_data, 1, MODELS[:1])
    s = run_judge(qs, ans, smol_judge, mode="single", out=tmp_path, max_new_tokens=12, rounds=20, progress=False)
    rows = [json.loads(x) for x in (tmp_path / "verdicts.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["judgment"]
    assert sum(r["score"] is not None for r in rows) + sum(s["errors"].values()) == 1
    assert all((r["score"] is None) == (r["error"] is not None) for r in rows)


@pytest.mark.slow
def test_full_pairwise_run_all_models(shared_data, smol_judge, tmp_path):
    qs, ans = _data(shared_data, 40, None)
    s = run_judge(qs, ans, smol_judge, mode="pairwise", out=tmp_path, baseline="text-davinci-003", rounds=500,
                  progress=False, verdict="logprob", chat_format=smol_judge.renderer.prompt_text)
    assert len(s["leaderboard"]) == 8 and s["errors"] == {}
