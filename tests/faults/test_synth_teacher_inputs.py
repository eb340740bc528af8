"""Issue #24 item 11b: the endpoint's Retry-After floors the backoff; evol/multiturn keep a seed's input; evol
drops commentary about "the original prompt"; instructgpt_dpo's report shows SFT, DPO and the pairs."""

import asyncio
import json
from pathlib import Path
from types import SimpleNamespace

import httpx
import yaml

from instructkit.lm.api import GenerateRequest
from instructkit.synth.endpoint import AsyncEndpoint
from instructkit.synth.evol import eliminate_by_prompt
from instructkit.synth.io import load_instructions

REPO = Path(__file__).resolve().parents[2]


def test_retry_after_is_a_floor_not_a_replacement(monkeypatch):
    calls, sleeps = [], []

    def busy(request):  # a queue that stays full for a while and always says "1 second"
        calls.append(1)
        if len(calls) <= 5:
            return httpx.Response(429, headers={"Retry-After": "1"}, text="queue full")
        return httpx.Response(200, json={"choices": [{"message": {"content": "done"}}], "usage": {}})

    real_sleep = asyncio.sleep

    async def fake_sleep(s):
        sleeps.append(s)
        await real_sleep(0)

    monkeypatch.setattr("instructkit.synth.endpoint.asyncio.sleep", fake_sleep)
    ep = AsyncEndpoint("http://x", "m", transport=httpx.MockTransport(busy))  # defaults: backoff 1 s, 6 retries
    res = ep.generate([GenerateRequest(messages=[{"role": "user", "content": "hi"}])])
    assert res[0].texts == ["done"]
    assert sleeps == [1.0, 2.0, 4.0, 8.0, 16.0]  # exponential, never below Retry-After
    sleeps.clear()
    calls.clear()
    ep = AsyncEndpoint("http://x", "m", transport=httpx.MockTransport(
        lambda r: calls.append(1) or (httpx.Response(503, headers={"Retry-After": "30"}) if len(calls) < 3 else
                                      httpx.Response(200, json={"choices": [{"message": {"content": "ok"}}]}))))
    ep.generate([GenerateRequest(messages=[{"role": "user", "content": "hi"}])])
    assert sleeps == [30.0, 30.0]  # a longer Retry-After is honoured


def test_load_instructions_keeps_the_first_instance_input(tmp_path):
    f = tmp_path / "seeds.jsonl"
    f.write_text(json.dumps({"id": "seed_task_1", "instruction": "What is the relation between the given pairs?",
                             "instances": [{"input": "Night : Day :: Right : Left", "output": "Opposites."}]}) + "\n"
                 + json.dumps({"id": "t2", "instruction": "Name a colour.", "instances": [{"input": "", "output": "Red"}]})
                 + "\n")
    got = load_instructions(f)
    assert got[0]["instruction"] == "What is the relation between the given pairs?\n\nNight : Day :: Right : Left"
    assert got[1]["instruction"] == "Name a colour."


def test_evol_drops_commentary_about_the_original_prompt():
    for text in ["The original prompt asks for a poem; the rewritten version adds a rhyme scheme.",
                 "Here is a more complex version of the prompt: write a poem.",
                 "In this rewritten instruction, the user must also cite sources.",
                 "This prompt now requires the answer to use a table."]:
        assert eliminate_by_prompt(text) is not None, text
    for text in ["Write a sonnet about autumn that uses an ABAB rhyme scheme and mentions three trees.",
                 "Given the table below, compute the average price per region and explain the outliers.",
                 "Answer the given question using the table below.", "Write a new prompt for an image generator."]:
        assert eliminate_by_prompt(text) is None, text


def test_instructgpt_dpo_report_shows_sft_dpo_and_pairs(tmp_path):
    from instructkit.pipeline.builtin import report

    recipe = yaml.safe_load((REPO / "recipes" / "instructgpt_dpo.yaml").read_text())
    wired = recipe["stages"]["report"]["inputs"]
    kinds = {k: recipe["stages"][v]["kind"] for k, v in wired.items()}
    assert sorted(kinds.values()) == ["eval.winrate", "synth.preferences", "train", "train"]
    runs = {}
    for name, rows in {"sft": [{"step": 1, "loss": 2.1}, {"step": 3, "loss": 1.7}],
                       "dpo": [{"step": 2, "loss": 0.693, "reward_margin": 0.0, "reward_accuracy": 0.5},
                               {"step": 8, "loss": 0.531, "reward_margin": 0.42, "reward_accuracy": 0.75}]}.items():
        d = tmp_path / name
        d.mkdir()
        (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (d / "summary.json").write_text("{}")
        runs[name] = {"model": str(d / "model"), "final_loss": rows[-1]["loss"], "summary": str(d / "summary.json"),
                      "steps": rows[-1]["step"]}
    inputs = {"sft": runs["sft"], "prefs": {"data": "p.jsonl", "pairs": 24,
                                           "counts": {"prompts": 8, "samples": 24, "candidate_pairs": 24, "tied": 0}},
              "dpo": runs["dpo"],
              "winrate": {"scores": {"win_rate": {"format": "pairwise", "n": 16, "metric": "win_rate",
                                                  "value": 0.5625, "ci": [0.47, 0.69]}}, "model": "dpo"}}
    out = tmp_path / "report"
    out.mkdir()
    ctx = SimpleNamespace(inputs=inputs, out=out, console=SimpleNamespace(print=lambda *a, **k: None))
    report(ctx, SimpleNamespace(name="instructgpt_dpo", description="d"))
    md = (out / "report.md").read_text()
    assert "win_rate" in md
    assert "**sft** (train): 3 steps, loss 2.1000 -> 1.7000" in md
    assert "**dpo** (train): 8 steps, loss 0.6930 -> 0.5310, reward_margin 0.4200, reward_accuracy 0.7500" in md
    assert "**prefs** (preference pairs): 24 pairs written (prompts 8, samples 24, candidate_pairs 24, tied 0)" in md
    stages = json.loads((out / "report.json").read_text())["stages"]
    assert [s["stage"] for s in stages] == ["sft", "prefs", "dpo"]
