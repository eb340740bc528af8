"""SmolLM2 end to end: packed scoring == naive forward, `instructkit eval` on BBH, held-out report smoke."""

import json

import pytest
import torch

pytestmark = pytest.mark.integration

MMLU = [("What is the capital of France?", ["Berlin", "Paris", "Rome", "Madrid"], "B"),
        ("How many legs does a spider have?", ["Six", "Four", "Eight", "Ten"], "C"),
        ("Which planet is closest to the Sun?", ["Mercury", "Venus", "Mars", "Earth"], "A"),
        ("What is 3 + 4?", ["5", "6", "8", "7"], "D")]


def mmlu_file(path):
    path.write_text("".join(json.dumps(dict(question=q, answer_a=o[0], answer_b=o[1], answer_c=o[2], answer_d=o[3],
                                            correct_answer=a)) + "\n" for q, o, a in MMLU))
    return path


def test_packed_loglikelihood_matches_naive(smollm2_model, smollm2_tokenizer):
    from instructkit.lm.api import LoglikelihoodRequest as R
    from instructkit.lm.hf import HFModel
    lm = HFModel(smollm2_model, smollm2_tokenizer, batch_size=4, progress=False)
    reqs = [R("Question: What is the capital of France?\nAnswer:", c) for c in [" Paris", " Berlin", " Rome"]]
    res = lm.loglikelihood(reqs)
    for r, o in zip(reqs, res):
        c, x = lm.encode_pair(r.context, r.continuation)
        with torch.no_grad():
            lp = torch.log_softmax(smollm2_model(torch.tensor([c + x])).logits.float(), -1)[0]
        ref = sum(lp[len(c) - 1 + j, x[j]].item() for j in range(len(x)))
        assert abs(o.logprob - ref) < 1e-4
    scores = [o.logprob for o in res]
    assert scores.index(max(scores)) == 0  # the real model knows Paris


def test_cli_eval_bbh(tmp_path, shared_data, smollm2_path, monkeypatch):
    from typer.testing import CliRunner

    from instructkit.cli import app
    monkeypatch.setenv("INSTRUCTKIT_SHARED", str(shared_data))
    out = tmp_path / "bbh"
    r = CliRunner().invoke(app, ["eval", "--model", "smollm2-135m-instruct", "--tasks", "bbh:boolean_expressions",
                                 "--fmt", "zero_shot", "--limit", "8", "--out", str(out), "eval.max_new_tokens=4"])
    assert r.exit_code == 0, r.output
    res = json.loads((out / "results.json").read_text())
    t = res["tasks"]["bbh:boolean_expressions"]
    assert t["n"] == 8 and 0.0 <= t["score"] <= 1.0 and t["format"] == "zero_shot"
    preds = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 8 and all(p["completions"] for p in preds)
    assert json.loads((out / "throughput.json").read_text())["generation"]["tokens"] > 0


def test_held_out_report_smoke(tmp_path, smollm2_path):
    from typer.testing import CliRunner

    from instructkit.cli import app
    a, b = mmlu_file(tmp_path / "a.jsonl"), mmlu_file(tmp_path / "b.jsonl")
    man = tmp_path / "manifest.json"
    man.write_text(json.dumps({"held_out": {"tasks": [f"mmlu:{a}"], "clusters": ["knowledge"]},
                               "train_tasks": [f"mmlu:{b}"],
                               "tasks": {f"mmlu:{a}": {"cluster": "knowledge"}, f"mmlu:{b}": {"cluster": "qa"}}}))
    out = tmp_path / "rep"
    r = CliRunner().invoke(app, ["eval", "report", "--base", smollm2_path, "--tuned", smollm2_path,
                                 "--manifest", str(man), "--out", str(out), "--limit", "4"])
    assert r.exit_code == 0, r.output
    rep = json.loads((out / "report.json").read_text())
    assert len(rep["tasks"]) == 2 and all(t["delta"] == 0.0 for t in rep["tasks"])
    assert rep["throughput"]["tuned"]["cached_requests"]["loglikelihood"] == 32  # base == tuned: all cached
    for f in ("report.md", "report.html", "clusters.png"):
        assert (out / f).stat().st_size > 0


def test_eval_context_equals_training_prompt_smollm2(smollm2_model, smollm2_tokenizer):
    """Issue #16 item 2 on the real tokenizer: for every shipped template the tokens rank classification
    conditions on are the tokens training puts before the target."""
    from instructkit.chat.conversation import Conversation
    from instructkit.chat.render import IGNORE_INDEX, Renderer, shipped_templates
    from instructkit.lm.hf import HFModel
    prompt = "Premise: the cat is on the mat.\nHypothesis: a cat sits on a mat.\nOPTIONS:\n- yes\n- no"
    for template in shipped_templates():
        lm = HFModel(smollm2_model, smollm2_tokenizer, chat_template=template, apply_chat_template=True, progress=False)
        for target in ("yes", "it is not possible to tell"):
            ids, labels = Renderer(smollm2_tokenizer, template)(Conversation.from_pairs(prompt, target))
            first = next(i for i, x in enumerate(labels) if x != IGNORE_INDEX)
            ctx, cont = lm.encode_pair(prompt, target)
            assert ctx == ids[:first] and cont == ids[first: first + len(cont)], template
