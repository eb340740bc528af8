"""Runner: results/predictions/throughput files, self-consistency, resume after an interruption, CLI."""

import json

import pytest

from instructkit.lm.api import GenerateResult, LoglikelihoodResult
from instructkit.eval.benchmarks import load_mmlu
from instructkit.eval.datasets import EvalItem, EvalSet
from instructkit.eval.runner import evaluate


class ScriptedLM:
    """Prefers the choice ' B'; answers generation from a script; counts and can fail after N requests."""

    name = "scripted"
    fingerprint = "scripted-v1"

    def __init__(self, fail_after=None, texts=None):
        self.seen = {"loglikelihood": 0, "generate": 0}
        self.fail_after, self.texts = fail_after, texts or {}

    def _tick(self, kind, n):
        if self.fail_after is not None and sum(self.seen.values()) + n > self.fail_after:
            raise KeyboardInterrupt("simulated interruption")
        self.seen[kind] += n

    def loglikelihood(self, reqs):
        self._tick("loglikelihood", len(reqs))
        return [LoglikelihoodResult(-1.0 if r.continuation == " B" else -2.0, False, 1, len(r.continuation))
                for r in reqs]

    def generate(self, reqs):
        self._tick("generate", len(reqs))
        return [GenerateResult(list(self.texts.get(r.prompt, ["So the answer is 0."] * r.n))[: r.n], [5] * r.n)
                for r in reqs]


@pytest.fixture()
def mmlu_file(tmp_path):
    rows = [dict(question=f"Q{i}?", answer_a="w", answer_b="x", answer_c="y", answer_d="z",
                 correct_answer="B" if i % 2 == 0 else "C") for i in range(10)]
    p = tmp_path / "mmlu.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return p


def test_results_predictions_throughput(tmp_path, mmlu_file):
    res = evaluate(ScriptedLM(), [load_mmlu(mmlu_file)], tmp_path / "out", progress=False)
    t = res["tasks"]["mmlu:mmlu.jsonl"]
    assert t["n"] == 10 and t["metrics"]["acc"]["value"] == 0.5 and t["format"] == "zero_shot"
    assert t["metrics"]["acc"]["stderr"] == pytest.approx((0.25 * 10 / 9) ** 0.5 / 10 ** 0.5)
    preds = [json.loads(x) for x in (tmp_path / "out" / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 10 and preds[0]["correct"] and not preds[1]["correct"]
    assert preds[0]["scores"] == [-2.0, -1.0, -2.0, -2.0] and preds[0]["prediction"] == " B"
    thr = json.loads((tmp_path / "out" / "throughput.json").read_text())
    assert thr["scoring"]["requests"] == 40 and thr["hardware"]["cpu"]
    assert json.loads((tmp_path / "out" / "results.json").read_text())["tasks"]


def test_self_consistency_majority_vote(tmp_path):
    items = [EvalItem("math", 0, "Q: 1+2?", "3", answer_kind="number", cot=True),
             EvalItem("math", 1, "Q: 2+2?", "4", answer_kind="number", cot=True)]
    texts = {"Q: 1+2?": ["So the answer is 3.", "So the answer is 4.", "#### 3"],
             "Q: 2+2?": ["The answer is 5.", "So the answer is 4.", "The answer is 5."]}
    res = evaluate(ScriptedLM(texts=texts), [EvalSet("math", items, "few_shot_cot")], tmp_path, self_consistency=3,
                   progress=False)
    assert res["tasks"]["math"]["metrics"]["exact_match"]["value"] == 0.5
    preds = [json.loads(x) for x in (tmp_path / "predictions.jsonl").read_text().splitlines()]
    assert preds[0]["answers"] == ["3", "4", "3"] and preds[0]["prediction"] == "3"
    assert preds[1]["prediction"] == "5"


def test_resume_computes_only_remaining(tmp_path, mmlu_file):
    out = tmp_path / "out"
    from instructkit.eval.cache import CachedLM
    flaky = ScriptedLM(fail_after=24)          # 10 items x 4 choices = 40 requests; dies after 6 items
    with pytest.raises(KeyboardInterrupt):
        evaluate(CachedLM(flaky, out / "cache.jsonl", chunk_size=8, flush_seconds=None), [load_mmlu(mmlu_file)], out,
                 progress=False)
    assert len((out / "cache.jsonl").read_text().splitlines()) == 24
    # a torn final line (killed mid-write) must not break the resume
    with (out / "cache.jsonl").open("a") as f:
        f.write('{"k": "abc", "r": {"logp')
    again = ScriptedLM()
    res = evaluate(CachedLM(again, out / "cache.jsonl", chunk_size=8, flush_seconds=None), [load_mmlu(mmlu_file)], out,
                   progress=False)
    assert again.seen["loglikelihood"] == 16  # only the 4 unfinished items
    assert res["tasks"]["mmlu:mmlu.jsonl"]["metrics"]["acc"]["value"] == 0.5
    assert res["throughput"]["cached_requests"]["loglikelihood"] == 24
    third = ScriptedLM()
    evaluate(third, [load_mmlu(mmlu_file)], out, progress=False)
    assert third.seen == {"loglikelihood": 0, "generate": 0}
    # another model (fingerprint) shares nothing
    other = ScriptedLM()
    other.fingerprint = "scripted-v2"
    evaluate(other, [load_mmlu(mmlu_file)], out, progress=False)
    assert other.seen["loglikelihood"] == 40


def test_cli_runs_with_tiny_model(tmp_path, mmlu_file, tiny_model_dir):
    from typer.testing import CliRunner

    from instructkit.cli import app
    out = tmp_path / "cli"
    r = CliRunner().invoke(app, ["eval", "--model", tiny_model_dir, "--tasks", f"mmlu:{mmlu_file}",
                                 "--limit", "4", "--batch-size", "2", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "throughput" in r.output and "examples/s" in r.output
    res = json.loads((out / "results.json").read_text())
    t = res["tasks"]["mmlu:mmlu.jsonl"]
    # stratified by gold class: 2 of B and 2 of C (limit 3 would give 1 + 1: exactly balanced)
    assert t["n"] == 4 and res["config"]["batch_size"] == 2
    assert t["sampling"]["stratified"] and t["sampling"]["per_class"] == 2 and t["chance"] == 0.5


def test_cli_config_and_overrides(tmp_path, mmlu_file, tiny_model_dir):
    from typer.testing import CliRunner

    from instructkit.cli import app
    cfg = tmp_path / "r.yaml"
    cfg.write_text(f"model:\n  name_or_path: {tiny_model_dir}\neval:\n  tasks: ['mmlu:{mmlu_file}']\n  limit: 5\n")
    out = tmp_path / "o"
    r = CliRunner().invoke(app, ["eval", "--config", str(cfg), "--out", str(out), "eval.limit=2"])
    assert r.exit_code == 0, r.output
    assert json.loads((out / "results.json").read_text())["tasks"]["mmlu:mmlu.jsonl"]["n"] == 2
    r = CliRunner().invoke(app, ["eval", "--config", str(cfg), "eval.bogus=1"])
    assert r.exit_code != 0 and "bogus" in str(r.exception or r.output)
