"""Held-out cluster report: per task / per cluster before-vs-after, files written, bad manifest errors."""

import json

import pytest

from instructkit.errors import DataError
from instructkit.eval.api import LoglikelihoodResult
from instructkit.eval.report import held_out_report


class PrefersLM:
    """Always prefers one letter: 'base' picks A, 'tuned' picks B."""

    def __init__(self, letter):
        self.name = self.fingerprint = f"prefers-{letter}"
        self.letter = letter

    def loglikelihood(self, reqs):
        return [LoglikelihoodResult(-1.0 if r.continuation.strip() == self.letter else -3.0, False, 1, 2) for r in reqs]

    def generate(self, reqs):
        raise AssertionError("zero-shot multiple choice never generates")


def mmlu(tmp_path, name, answers):
    p = tmp_path / f"{name}.jsonl"
    p.write_text("".join(json.dumps(dict(question=f"q{i}", answer_a="a", answer_b="b", answer_c="c", answer_d="d",
                                         correct_answer=a)) + "\n" for i, a in enumerate(answers)))
    return f"mmlu:{p}"


def test_held_out_report(tmp_path):
    held, seen = mmlu(tmp_path, "nli", "BBBA"), mmlu(tmp_path, "qa", "AABB")
    man = tmp_path / "manifest.json"
    man.write_text(json.dumps({"held_out": {"tasks": [held], "clusters": ["nli"]}, "train_tasks": [seen, held],
                               "tasks": {held: {"cluster": "nli"}, seen: {"cluster": "qa"}}}))
    out = tmp_path / "rep"
    rep = held_out_report("A", "B", man, out, make_lm=PrefersLM, progress=False)
    by = {r["task"]: r for r in rep["tasks"]}
    assert len(by) == 2  # a held-out task listed among train_tasks is evaluated once, as held-out
    assert by[held]["held_out"] and by[held]["base"] == 0.25 and by[held]["tuned"] == 0.75
    assert not by[seen]["held_out"] and by[seen]["delta"] == 0.0
    assert [c["cluster"] for c in rep["clusters"]] == ["nli", "qa"]  # held-out first
    for f in ("report.json", "report.md", "report.html", "clusters.png"):
        assert (out / f).stat().st_size > 0
    assert "| nli | yes | 1 | 0.2500 | 0.7500 | +0.5000 |" in (out / "report.md").read_text()
    assert (out / "clusters.png").read_bytes()[:4] == b"\x89PNG"


def test_bad_manifest(tmp_path):
    man = tmp_path / "m.json"
    man.write_text(json.dumps({"train_tasks": []}))
    with pytest.raises(DataError, match="field 'held_out'"):
        held_out_report("A", "B", man, tmp_path / "o", make_lm=PrefersLM)
