"""HFModel.generate through the serve engine: continuous-batched greedy == one-at-a-time greedy token for
token; stop strings per sequence; every EOS id of the generation config; n samples share one prefill."""

from __future__ import annotations

import pytest
import torch

from instructkit.lm.api import GenerateRequest
from instructkit.lm.hf import HFModel

PROMPTS = ["the a of to", "Write a review of the movie", "sum plus minus", "yes",
           "one two three four five six seven eight nine ten hundred", "is it true that the answer",
           "Q: what is two plus two?\nA:", "hello"]


@pytest.fixture(scope="module")
def tok():
    from instructkit.models import make_tiny_tokenizer
    return make_tiny_tokenizer()


@pytest.fixture(scope="module")
def model(tok):
    from instructkit.models import make_tiny_model
    return make_tiny_model(tok)


def alone(model, tok, prompt, n, eos):
    """The reference: HF generate on the prompt alone (no padding, no batch), greedy."""
    ids = tok(prompt)["input_ids"]
    with torch.no_grad():
        g = model.generate(torch.tensor([ids]), max_new_tokens=n, do_sample=False, eos_token_id=eos,
                           pad_token_id=tok.pad_token_id)
    out = g[0, len(ids):].tolist()
    ends = [k for k, t in enumerate(out) if t in eos]
    return out[: ends[0] + 1] if ends else out


def test_continuous_batched_greedy_equals_one_at_a_time(model, tok):
    # batch 3 < 8 requests with different lengths: rows leave and waiting prompts join mid-decode
    lm = HFModel(model, tok, batch_size=3, gen_batch_size=3, progress=False)
    reqs = [GenerateRequest(prompt=p, max_new_tokens=6 + 3 * (i % 4)) for i, p in enumerate(PROMPTS)]
    got = lm.generate(reqs)
    eng = lm.engine
    assert eng.stats["max_batch"] == 3 and eng.stats["prefills"] >= 3  # really batched, really joined
    for r, g in zip(reqs, got):
        ref = alone(model, tok, r.prompt, r.max_new_tokens, lm.eos_token_ids())
        assert g.n_tokens == [len(ref)]
        assert g.texts == [tok.decode(ref, skip_special_tokens=True)]
    # and the same as the fixed-batch HF path (the previous implementation)
    old = HFModel(model, tok, batch_size=3, progress=False, generation="hf").generate(reqs)
    assert [o.texts for o in old] == [g.texts for g in got]
    assert [o.n_tokens for o in old] == [g.n_tokens for g in got]


def test_stop_strings_are_per_sequence(model, tok):
    lm = HFModel(model, tok, batch_size=4, progress=False)
    full = lm.generate([GenerateRequest(prompt=p, max_new_tokens=12) for p in PROMPTS[:4]])
    ref = alone(model, tok, PROMPTS[0], 12, lm.eos_token_ids())
    stop = next(t for t in (tok.decode(ref[k:k + 1]) for k in range(2, len(ref))) if t.strip())
    text0 = full[0].texts[0]
    assert stop in text0 and full[0].n_tokens[0] > 4
    reqs = [GenerateRequest(prompt=p, max_new_tokens=12, stop=[stop] if i == 0 else []) for i, p in enumerate(PROMPTS[:4])]
    cut = lm.generate(reqs)
    assert cut[0].texts[0] == text0[: text0.find(stop)]          # cut before the stop string
    assert cut[0].n_tokens[0] < full[0].n_tokens[0]              # and decoding stopped there
    assert [c.texts for c in cut[1:]] == [f.texts for f in full[1:]]  # the others ran on unaffected


def test_every_generation_config_eos_ends_a_sequence(model, tok):
    lm = HFModel(model, tok, batch_size=4, progress=False)
    free = lm.generate([GenerateRequest(prompt=p, max_new_tokens=10) for p in PROMPTS[:4]])
    ref = alone(model, tok, PROMPTS[0], 10, [tok.eos_token_id])
    k = next(k for k in range(2, len(ref)) if ref[k] not in ref[:k])
    third = ref[k]  # make a later generated token of prompt 0 an end token, via the generation config
    old = model.generation_config.eos_token_id
    model.generation_config.eos_token_id = [third, tok.eos_token_id]
    try:
        lm2 = HFModel(model, tok, batch_size=4, progress=False)
        assert lm2.eos_token_ids() == [third, tok.eos_token_id]
        got = lm2.generate([GenerateRequest(prompt=p, max_new_tokens=10) for p in PROMPTS[:4]])
    finally:
        model.generation_config.eos_token_id = old
    assert got[0].n_tokens == [k + 1]  # up to and including the end token
    assert got[0].texts[0] == tok.decode(ref[:k], skip_special_tokens=True)
    assert free[0].n_tokens[0] > k + 1


def test_n_samples_share_one_prefill_and_are_seeded(model, tok):
    lm = HFModel(model, tok, batch_size=8, progress=False)
    r = GenerateRequest(prompt="Q: what is two plus two?\nA:", max_new_tokens=8, temperature=1.0, n=5, seed=3)
    a = lm.generate([r])[0]
    assert len(a.texts) == 5 and len(set(a.texts)) > 1  # 5 different samples
    assert lm.engine.stats["prefills"] == 1  # one prefill for the 5 samples
    assert lm.generate([r])[0].texts == a.texts  # seeded: reproducible
    greedy = lm.generate([GenerateRequest(prompt=r.prompt, max_new_tokens=8, n=3)])[0]
    assert len(greedy.texts) == 3 and len(set(greedy.texts)) == 1


def test_shared_prefill_samples_equal_separate_prefills(model, tok):
    """Copying the prompt's cache rows to n samples changes nothing: sample i with seed s+i equals a
    request n=1 that has the same generator seed (prefilled on its own)."""
    from instructkit.lm.engine import Engine
    from instructkit.lm.sampling import SamplingParams
    ids = tok("one two three")["input_ids"]
    eng = Engine(model, tok, max_batch_size=8)
    many = eng.generate_many([(ids, SamplingParams(max_tokens=8, temperature=1.0, n=3, seed=10))])[0]
    one = [eng.generate_many([(ids, SamplingParams(max_tokens=8, temperature=1.0, n=1, seed=10 + i))])[0]
           for i in range(3)]
    assert [c.token_ids for c in many.outputs] == [o.outputs[0].token_ids for o in one]


def test_long_prompt_keeps_its_end_and_is_counted(model, tok):
    lm = HFModel(model, tok, batch_size=2, progress=False, max_length=24)
    out = lm.generate([GenerateRequest(prompt=" ".join(["word"] * 60) + " end", max_new_tokens=4)])
    assert len(out[0].n_tokens) == 1 and lm.stats["gen_prompts_truncated"] == 1


@pytest.mark.integration
def test_smollm2_continuous_batched_greedy_equals_alone(smollm2_model, smollm2_tokenizer):
    lm = HFModel(smollm2_model, smollm2_tokenizer, batch_size=2, progress=False)
    prompts = ["Question: What is 3 + 4?\nAnswer:", "The capital of France is", "def add(a, b):"]
    reqs = [GenerateRequest(prompt=p, max_new_tokens=n, stop=["\n\n"]) for p, n in zip(prompts, (12, 6, 10))]
    got = lm.generate(reqs)
    for r, g in zip(reqs, got):
        ref = alone(smollm2_model, smollm2_tokenizer, r.prompt, r.max_new_tokens, lm.eos_token_ids())
        text = smollm2_tokenizer.decode(ref, skip_special_tokens=True)
        assert g.texts[0] == text.split("\n\n")[0]


def test_cli_dtype_auto_uses_the_probe_and_generates(tmp_path, tiny_model_dir, monkeypatch):
    import json

    from typer.testing import CliRunner

    from instructkit.cli import app
    from instructkit.models import dtype as D
    monkeypatch.setattr(D, "probe", lambda device_type="cpu", tokens=None: {"dtype": "bfloat16", "why": "auto: probe says so"})
    gsm = tmp_path / "test.jsonl"
    gsm.write_text("".join(json.dumps({"question": f"What is {i} + 1?", "answer": f"so\n#### {i + 1}"}) + "\n"
                           for i in range(3)))
    out = tmp_path / "o"
    r = CliRunner().invoke(app, ["eval", "--model", tiny_model_dir, "--tasks", f"gsm8k:{gsm}", "--fmt", "zero_shot",
                                 "--dtype", "auto", "--batch-size", "2", "--out", str(out), "eval.max_new_tokens=4"])
    assert r.exit_code == 0, r.output
    assert "dtype auto -> bfloat16: auto: probe says so" in r.output
    res = json.loads((out / "results.json").read_text())
    assert res["throughput"]["dtype"] == "bfloat16" and res["throughput"]["generation"]["requests"] == 3
