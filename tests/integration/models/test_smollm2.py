import pytest

pytestmark = pytest.mark.integration


def test_alias_converted_once_then_reused(smollm2_path, monkeypatch):
    from pathlib import Path
    import instructkit.models.loading as loading
    p = Path(smollm2_path)
    assert (p / "model.safetensors").is_file() and (p / "config.json").is_file()
    # the second resolution must load the cached safetensors folder, never convert again
    monkeypatch.setattr(loading, "convert_gguf", lambda *a, **k: pytest.fail("converted twice"))
    m = loading.load_model("smollm2-135m-instruct")
    tok = loading.load_tokenizer("smollm2-135m-instruct")
    assert 130e6 < sum(x.numel() for x in m.parameters()) < 140e6
    assert tok.eos_token == "<|im_end|>" and "im_start" in tok.chat_template


def test_model_answers_sensibly(smollm2_model, smollm2_tokenizer):
    from instructkit.chat import Renderer
    import torch
    text = Renderer(smollm2_tokenizer).prompt_text([{"role": "user", "content": "What is the capital of France?"}])
    ids = smollm2_tokenizer(text, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        out = smollm2_model.generate(**ids, max_new_tokens=12, do_sample=False)
    answer = smollm2_tokenizer.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in answer
