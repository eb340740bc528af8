"""GGUF export of the shipped SmolLM2-135M-Instruct: weights, logits, greedy text, tokenizer, Modelfile."""

from __future__ import annotations

import pytest

gguf = pytest.importorskip("gguf")
torch = pytest.importorskip("torch")
np = pytest.importorskip("numpy")

pytestmark = pytest.mark.integration

PROMPTS = ["What is the capital of France?", "Write a haiku about the sea."]


@pytest.fixture(scope="module")
def shipped_exports(smollm2_path, tmp_path_factory):
    from instructkit.models.gguf_export import export_gguf

    root = tmp_path_factory.mktemp("smol-gguf")
    return {"f16": export_gguf("smollm2-135m-instruct", root / "f16", quant="f16")}


def test_untouched_export_has_the_shipped_weights(shipped_exports):
    """Every tensor of the f16 export is the shipped Q4_1/Q8_0 tensor dequantized, rounded to f16 (norms
    exactly); layout and names are the shipped file's (272 tensors, tied head left out as shipped)."""
    from instructkit.models.loading import _alias_gguf

    shipped = gguf.GGUFReader(str(_alias_gguf("smollm2-135m-instruct")))
    ours = {t.name: t for t in gguf.GGUFReader(str(shipped_exports["f16"])).tensors}
    assert set(ours) == {t.name for t in shipped.tensors}
    for t in shipped.tensors:
        want = gguf.quants.dequantize(t.data, t.tensor_type)
        got = gguf.quants.dequantize(ours[t.name].data, ours[t.name].tensor_type)
        if ours[t.name].tensor_type.name == "F16":
            want = want.astype(np.float16).astype(np.float32)
        assert np.array_equal(got, want), t.name


def test_reload_logits_match_hf(shipped_exports, smollm2_model, smollm2_tokenizer, tmp_path, monkeypatch):
    """f16 read back through our own GGUF loader (the one that reads the shipped file): logits within a
    stated bound of the HF model. (q8_0 greedy text vs HF and llama.cpp: tests/slow/test_gguf_llamacpp.py.)"""
    from instructkit.chat.render import Renderer
    from instructkit.models import load_model

    tok, r = smollm2_tokenizer, Renderer(smollm2_tokenizer)
    monkeypatch.setenv("INSTRUCTKIT_CACHE", str(tmp_path))  # the conversion of the export stays out of the cache
    f16 = load_model(str(shipped_exports["f16"])).eval()
    worst = 0.0
    for p in PROMPTS:
        ids = torch.tensor([tok(r.prompt_text([{"role": "user", "content": p}]))["input_ids"]])
        with torch.no_grad():
            d = (f16(ids).logits - smollm2_model(ids).logits).abs()
        worst = max(worst, d.max().item())
        assert torch.equal(f16(ids).logits[0, -1].argmax(), smollm2_model(ids).logits[0, -1].argmax())
    print(f"SmolLM2 f16 export: max |dlogit| = {worst:.4g} over {len(PROMPTS)} prompts")
    assert worst < 0.1


def test_tokenizer_and_modelfile(shipped_exports, smollm2_tokenizer):
    from transformers import AutoTokenizer

    from instructkit.chat.render import Renderer

    p = shipped_exports["f16"]
    back = AutoTokenizer.from_pretrained(str(p.parent), gguf_file=p.name)
    msgs = [{"role": "user", "content": "Grüße, 日本語, Привет 🚀 and 12345"}]
    ours = Renderer(smollm2_tokenizer).prompt_text(msgs)
    assert back(ours)["input_ids"] == smollm2_tokenizer(ours)["input_ids"]
    assert back.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True) == ours
    text = (p.parent / "Modelfile").read_text()
    assert 'SYSTEM """You are a helpful AI assistant named SmolLM, trained by Hugging Face"""' in text
    assert 'PARAMETER stop "<|im_end|>"' in text
    card = (p.parent / "README.md").read_text()
    assert "base_model: smollm2-135m-instruct" in card and "## Reproduce" in card
