"""Held-out cluster report: per task / per cluster before-vs-after, files written, bad manifest errors."""

import json

import pytest

from instructkit.errors import DataError
from instructkit.lm.api import LoglikelihoodResult
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
    md = (out / "report.md").read_text()
    # n examples, n items, chance, each score with its 95% CI, the paired delta with its CI
    # chance is the best answer-blind baseline on these items (BBBA: always B = 0.75), not 1/4
    assert "| nli | yes | 1 | 4 | 4 | 0.750 | 0.250 [0.000, 0.750] | 0.750 [0.250, 1.000] | +0.500 [" in md
    assert "nli: NO DETECTABLE EFFECT" in md and "Reproduce: `instructkit eval report --base A --tuned B" in md
    assert by[held]["n_examples"] == 4 and by[held]["chance"] == 0.75
    assert by[held]["details"]["tuned"]["pred_share"] == {"A": 0.0, "B": 1.0}  # what the model does
    assert (out / "clusters.png").read_bytes()[:4] == b"\x89PNG"


def test_bad_manifest(tmp_path):
    man = tmp_path / "m.json"
    man.write_text(json.dumps({"train_tasks": []}))
    with pytest.raises(DataError, match="field 'held_out'"):
        held_out_report("A", "B", man, tmp_path / "o", make_lm=PrefersLM)


def _yaml_task(tmp_path, tid, cluster, n=6):
    # every row has its own words: only a deliberate leak shares a 13-gram with training
    rows = [{"p": " ".join(f"{tid}w{i}x{j}" for j in range(14)), "y": "yes" if i % 2 else "no"} for i in range(n)]
    for split in ("train", "validation"):
        (tmp_path / f"{tid}_{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    y = tmp_path / f"{tid}.yaml"
    y.write_text(f"id: {tid}\ncluster: {cluster}\nmetric: accuracy\nanswer_choices: ['yes', 'no']\n"
                 f"source: {{files: {{train: {tid}_train.jsonl, validation: {tid}_validation.jsonl}}}}\n"
                 "templates:\n  - {id: a, input: 'Is it true? {{p}}', target: '{{y}}'}\n"
                 "  - {id: b, input: 'Claim: {{p}}. Agree?', target: '{{y}}'}\n")
    return str(y)


class FirstChoiceLM:
    def __init__(self, ref):
        self.name = self.fingerprint = f"first-{ref}"

    def loglikelihood(self, reqs):
        return [LoglikelihoodResult(-1.0 if r.key[2] == 0 else -2.0, False, 1, 2) for r in reqs]


def test_report_on_yaml_task_mixture_uses_refs_oracle_contamination(tmp_path):
    """`eval report` on a mixture of YAML tasks loads them by the manifest's refs (was: unknown task);
    T0 data sets without an eval split are listed, not dropped; contamination runs on the mixture."""
    from instructkit.data.tasks import load_task
    from instructkit.data.tasks.mixture import MixSpec, build_mixture, write_jsonl
    tasks = [load_task(_yaml_task(tmp_path, "seen_t", "seenc")), load_task(_yaml_task(tmp_path, "held_t", "heldc"))]
    records, man = build_mixture(tasks, MixSpec(cap=4, rate_cap=4), hold_out=["heldc"])
    man["tasks"]["t0_ds"] = {"cluster": "qa", "ref": None}
    man["train_tasks"].append("t0_ds")
    leak = {"messages": [{"role": "user", "content": " ".join(f"held_tw0x{j}" for j in range(14))},
                         {"role": "assistant", "content": "no"}]}
    mix = tmp_path / "mix"
    mix.mkdir()
    (mix / "mixture.jsonl").write_bytes(write_jsonl(records + [leak]))
    (mix / "manifest.json").write_text(json.dumps(man))
    rep = held_out_report("b", "t", mix / "manifest.json", tmp_path / "rep", oracle="o", make_lm=FirstChoiceLM,
                          progress=False, limit=4, seed=3)
    by = {r["task"]: r for r in rep["tasks"]}
    assert set(by) == {"held_t", "seen_t"} and by["held_t"]["held_out"]
    assert by["held_t"]["n_examples"] == 4 and by["held_t"]["n_items"] == 8  # 4 examples x 2 templates
    assert set(by["held_t"]["scores"]) == {"base", "tuned", "oracle"} and "delta_oracle" in by["held_t"]
    # the oracle (trained on the held-out tasks) is scored on held-out tasks only
    assert set(by["seen_t"]["scores"]) == {"base", "tuned"} and "delta_oracle" not in by["seen_t"]
    assert "seen_t" not in json.loads((tmp_path / "rep" / "oracle" / "results.json").read_text())["tasks"]
    seen_c = next(c for c in rep["clusters"] if not c["held_out"])
    assert "oracle" not in seen_c["scores"] and "oracle" not in seen_c["verdict"]
    assert "| - |" in (tmp_path / "rep" / "report.md").read_text()
    assert rep["not_evaluated"] == {"t0_ds": "prompt/completion data set (T0 file) without an eval split"}
    cont = rep["contamination"]["tasks"]["held_t"]
    assert "held_t:validation:0" in _ids(tmp_path / "rep")  # the leaked example was drawn (seed 3)
    assert cont["examples"] == 4 and cont["contaminated"] == 1
    assert rep["clusters"][0]["summary"].startswith("held-out acc on heldc")
    assert rep["clusters"][0]["decision"]["verdict"] in ("transfer", "prior shift", "no detectable effect")
    assert "oracle" in (tmp_path / "rep" / "report.md").read_text()


def _ids(out):
    return {json.loads(x)["example_id"] for x in (out / "base" / "predictions.jsonl").read_text().splitlines()}


def test_training_template_found_next_to_the_tuned_model(tmp_path):
    from instructkit.eval.report import training_template
    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    (run / "recipe.yaml").write_text("model:\n  name_or_path: x\n  chat_template: plain\n")
    assert training_template("auto", str(run / "model")) == ("plain", True)
    assert training_template("auto", str(tmp_path)) == (None, False)  # no recipe: raw text
    assert training_template("none", str(run / "model")) == (None, False)
    assert training_template(None, str(run / "model")) == (None, True)  # the tokenizer's own, as training
    assert training_template("chatml", str(run / "model")) == ("chatml", True)
    (run / "recipe.yaml").write_text("model:\n  name_or_path: x\n")
    assert training_template("auto", str(run / "model")) == (None, True)


def test_report_renders_with_the_training_template(tmp_path, tiny_model_dir):
    """The default backend scores the context in the training format (here: plain)."""
    from instructkit.data.tasks import load_task
    from instructkit.data.tasks.mixture import MixSpec, build_mixture
    tasks = [load_task(_yaml_task(tmp_path, "s2", "sc", 3)), load_task(_yaml_task(tmp_path, "h2", "hc", 3))]
    _, man = build_mixture(tasks, MixSpec(cap=2, rate_cap=2), hold_out=["hc"])
    (tmp_path / "manifest.json").write_text(json.dumps(man))
    rep = held_out_report(tiny_model_dir, tiny_model_dir, tmp_path / "manifest.json", tmp_path / "r",
                          chat_template="plain", progress=False, contamination=False)
    res = json.loads((tmp_path / "r" / "base" / "results.json").read_text())
    assert res["rendering"] == {"chat_template": "plain", "applied": True}
    assert rep["tasks"][0]["delta"] == 0.0 and rep["chat_template"] == "plain"
