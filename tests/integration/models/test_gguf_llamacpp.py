"""Slow check: llama.cpp (llama-cpp-python) runs our GGUF export of SmolLM2 like HF does.

``python -m pytest tests/integration/models/test_gguf_llamacpp.py -m slow -s`` prints, per quantization,
max |dlogit| llama.cpp vs HF over the prompts, greedy text agreement on 10 prompts, and llama.cpp
tokens/s (with the machine's load average: timings on a shared machine are labelled, not trusted).
"""

from __future__ import annotations

import os
import time

import pytest

llama_cpp = pytest.importorskip("llama_cpp")
torch = pytest.importorskip("torch")
np = pytest.importorskip("numpy")

pytestmark = [pytest.mark.slow, pytest.mark.integration]

PROMPTS = ["What is the capital of France?", "Write a haiku about the sea.", "How many legs does a spider have?",
           "Give me three tips for sleeping better.", "What is 12 times 7?", "Translate 'good morning' to French.",
           "Explain photosynthesis in one sentence.", "Name a famous painting by Leonardo da Vinci.",
           "What is the boiling point of water in Celsius?", "Write a Python function that adds two numbers."]
NEW_TOKENS = 32


@pytest.fixture(scope="module")
def exports(smollm2_path, tmp_path_factory):
    from instructkit.models.gguf_export import export_gguf

    root = tmp_path_factory.mktemp("llamacpp")
    return {q: export_gguf("smollm2-135m-instruct", root / q, quant=q) for q in ("f16", "q8_0")}


def _hf_greedy(model, ids):
    with torch.no_grad():
        out = model.generate(torch.tensor([ids]), max_new_tokens=NEW_TOKENS, do_sample=False, pad_token_id=2)
    return out[0, len(ids):].tolist()


@pytest.mark.parametrize("quant", ["f16", "q8_0"])
def test_llamacpp_greedy_text_and_logits_vs_hf(quant, exports, smollm2_model, smollm2_tokenizer):
    from instructkit.chat.render import Renderer

    tok, r = smollm2_tokenizer, Renderer(smollm2_tokenizer)
    threads = int(os.environ.get("LLAMA_THREADS", "1"))
    llm = llama_cpp.Llama(model_path=str(exports[quant]), n_ctx=512, n_threads=threads, logits_all=True,
                          verbose=False)
    worst, equal, diverged, n_gen, t_gen = 0.0, 0, [], 0, 0.0
    for p in PROMPTS:
        text = r.prompt_text([{"role": "user", "content": p}])
        ids = tok(text)["input_ids"]
        assert llm.tokenize(text.encode(), add_bos=False, special=True) == ids, "tokenization differs"
        llm.reset()
        llm.eval(ids)
        with torch.no_grad():
            ref = smollm2_model(torch.tensor([ids])).logits[0].numpy()
        worst = max(worst, float(np.abs(np.asarray(llm.scores[: len(ids)]) - ref).max()))
        llm.reset()
        t0 = time.perf_counter()
        got = []
        for t in llm.generate(ids, top_k=1, temp=0.0, repeat_penalty=1.0):
            if t == llm.token_eos() or len(got) == NEW_TOKENS:
                break
            got.append(t)
        t_gen += time.perf_counter() - t0
        n_gen += len(got)
        want = _hf_greedy(smollm2_model, ids)
        want = want[: want.index(2)] if 2 in want else want
        if got == want[: len(got)] and len(got) == len(want[:NEW_TOKENS]):
            equal += 1
        else:
            k = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
            diverged.append((p, k, tok.decode(got), tok.decode(want)))
    load = os.getloadavg()
    print(f"\n[{quant}] llama.cpp vs HF: max |dlogit| {worst:.4g}; greedy text equal on {equal}/{len(PROMPTS)} "
          f"prompts ({NEW_TOKENS} new tokens); llama.cpp {n_gen / t_gen:.1f} tokens/s (prompt eval included, "
          f"{threads} thread, load average {load[0]:.2f} on {os.cpu_count()} CPUs)")
    for p, k, a, b in diverged:
        print(f"  diverged at token {k} on {p!r}:\n    llama.cpp: {a!r}\n    HF:        {b!r}")
    assert worst < (0.5 if quant == "f16" else 5.0)  # q8_0: llama.cpp also quantizes activations to 8 bits
    assert equal >= (9 if quant == "f16" else 3)  # q8_0: measured 4/10, divergence printed above


def test_shipped_file_tokenizes_digits_like_our_tokenizer(smollm2_tokenizer):
    """Record (not assert) whether llama.cpp's 'smollm' pre-tokenizer of the shipped file and our HF
    tokenizer (built by transformers from that file) split numbers the same way."""
    from instructkit.models.loading import _alias_gguf

    llm = llama_cpp.Llama(model_path=str(_alias_gguf("smollm2-135m-instruct")), vocab_only=True, verbose=False)
    for text in ["12345 apples", "in 2024, 3.14159"]:
        a = llm.tokenize(text.encode(), add_bos=False, special=True)
        b = smollm2_tokenizer(text)["input_ids"]
        print(f"{text!r}: shipped GGUF in llama.cpp {a} vs our tokenizer {b} -> {'same' if a == b else 'DIFFERENT'}")
