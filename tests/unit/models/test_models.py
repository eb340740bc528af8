import pytest

from instructkit.errors import InstructkitError
from instructkit.models import load_model, load_tokenizer, resolve_model


def test_tiny_folder_roundtrip(tiny_model_dir, tiny_tokenizer):
    tok = load_tokenizer(tiny_model_dir)
    assert tok("hello world")["input_ids"] == tiny_tokenizer("hello world")["input_ids"]
    assert tok.chat_template and tok.pad_token_id == tok.eos_token_id
    m = load_model(tiny_model_dir)
    assert m.config.model_type == "llama" and m.config.vocab_size == len(tok)


def test_bad_references_are_clear_errors(tmp_path):
    with pytest.raises(InstructkitError, match="not a built-in alias"):
        resolve_model("definitely-not-a-model")
    with pytest.raises(InstructkitError, match="GGUF file not found"):
        resolve_model(str(tmp_path / "x.gguf"))
    with pytest.raises(InstructkitError, match="no config.json"):
        resolve_model(str(tmp_path))
    with pytest.raises(InstructkitError, match="unknown dtype"):
        load_model("smollm2-135m-instruct", dtype="int3")


def test_hub_id_offline_is_a_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_model("someorg/somemodel") == "someorg/somemodel"
    with pytest.raises(InstructkitError, match="Offline"):
        load_tokenizer("someorg/somemodel")
