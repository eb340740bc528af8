"""GGUF export on tiny models: reload through our loader and transformers, tokenizer, Modelfile, --out rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

gguf = pytest.importorskip("gguf")
torch = pytest.importorskip("torch")

from instructkit.errors import InstructkitError  # noqa: E402
from instructkit.models.gguf_export import export_gguf, permute_qk  # noqa: E402

@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Loading a .gguf converts it into the model cache: keep those conversions out of the user's cache."""
    monkeypatch.setenv("INSTRUCTKIT_CACHE", str(tmp_path / "cache"))


PROMPTS = ["the answer is yes because", "Write a review: positive", "What is two plus three?", "one two three four"]


@pytest.fixture(scope="module")
def exported(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("gguf")
    return {q: export_gguf(tiny_model_dir, root / q, quant=q) for q in ("f32", "f16", "q8_0")}


def _logits(model, tok, text):
    ids = torch.tensor([tok(text)["input_ids"]])
    with torch.no_grad():
        return model(ids).logits[0]


def test_permutation_is_what_transformers_undoes():
    from transformers.modeling_gguf_pytorch_utils import LlamaTensorProcessor

    w = torch.randn(6 * 8, 5).numpy()
    back = LlamaTensorProcessor()._reverse_permute_weights(permute_qk(w, 6), 6, 6)
    assert (back == w).all() and not (permute_qk(w, 6) == w).all()


def test_reload_through_our_loader_matches_hf(exported, tiny_model_dir):
    """f32 is lossless (logits identical); f16 within a stated bound; q8_0 keeps the greedy token."""
    from instructkit.models import load_model, load_tokenizer

    ref, tok = load_model(tiny_model_dir).eval(), load_tokenizer(tiny_model_dir)
    diffs, agree = {}, {}
    for q, path in exported.items():
        m = load_model(str(path)).eval()
        d, same = 0.0, 0
        for p in PROMPTS:
            a, b = _logits(m, tok, p), _logits(ref, tok, p)
            d = max(d, (a - b).abs().max().item())
            same += int((a.argmax(-1) == b.argmax(-1)).all())
        diffs[q], agree[q] = d, same
    print("tiny model max |dlogit|:", diffs, "prompts with every greedy token equal:", agree)
    assert diffs["f32"] == 0.0
    assert 0 < diffs["f16"] < 2e-3
    assert diffs["q8_0"] < 5e-2 and agree["q8_0"] >= len(PROMPTS) - 1


def test_file_layout_and_metadata(exported, tiny_model_dir):
    r = gguf.GGUFReader(str(exported["q8_0"]))
    f = {k: v.contents() for k, v in r.fields.items() if not k.startswith("tokenizer.ggml.token")
         and k != "tokenizer.ggml.merges"}
    assert f["general.architecture"] == "llama" and f["llama.block_count"] == 2
    assert f["llama.attention.head_count"] == 4 and f["llama.attention.head_count_kv"] == 2
    assert f["tokenizer.ggml.model"] == "gpt2" and f["tokenizer.ggml.pre"] == "gpt-2"
    assert f["tokenizer.ggml.eos_token_id"] == 2 and f["tokenizer.ggml.eot_token_id"] == 2
    assert f["tokenizer.ggml.add_bos_token"] is False
    assert "<|im_start|>" in f["tokenizer.chat_template"]
    types = {t.name: t.tensor_type.name for t in r.tensors}
    assert types["blk.0.attn_norm.weight"] == "F32" and types["blk.0.attn_q.weight"] == "Q8_0"
    assert "output.weight" in types and len(types) == 2 * 9 + 3  # untied head is written
    tt = r.fields["tokenizer.ggml.token_type"]
    assert [int(tt.parts[i][0]) for i in tt.data[:4]] == [3, 3, 3, 1]  # the 3 specials are CONTROL


def test_tied_embeddings_write_no_output_tensor(tmp_path):
    from instructkit.models import load_model
    from instructkit.models.tiny import save_tiny

    src = save_tiny(str(tmp_path / "tied"), tie_word_embeddings=True)
    path = export_gguf(src, tmp_path / "out", quant="f32")
    assert "output.weight" not in {t.name for t in gguf.GGUFReader(str(path)).tensors}
    a, b = load_model(str(path)), load_model(src)
    assert torch.equal(a.lm_head.weight, b.lm_head.weight)


TEXTS = ["Hello world", "Grüße aus München – ça va? ¿Qué tal?", "日本語のテキストと中文", "Привет, мир! 🚀🎉",
         "  leading spaces\n\ttabs and\r\nnewlines  ", "numbers 1234567 and 3.14159", "emoji 👩‍💻 zwj"]


def test_tokenizer_round_trip_through_transformers_gguf_reader(exported, tiny_model_dir):
    from transformers import AutoTokenizer

    from instructkit.chat.render import Renderer
    from instructkit.models import load_tokenizer

    src = load_tokenizer(tiny_model_dir)
    path = exported["f16"]
    back = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    for t in TEXTS + ["<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"]:
        assert back(t)["input_ids"] == src(t)["input_ids"], t
        assert back.decode(src(t)["input_ids"]) == t
    assert back.convert_tokens_to_ids("<|im_end|>") == src.convert_tokens_to_ids("<|im_end|>") == 2
    msgs = [{"role": "user", "content": TEXTS[1]}, {"role": "assistant", "content": TEXTS[3]}]
    ours = Renderer(src).apply(msgs, add_generation_prompt=True)
    assert back.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True) == ours


def test_modelfile_renders_like_our_renderer(exported, tiny_model_dir):
    from gotemplate import ollama_render, parse_modelfile

    from instructkit.chat.render import Renderer
    from instructkit.models import load_tokenizer

    mf = parse_modelfile((exported["f16"].parent / "Modelfile").read_text())
    assert mf["from"] == "./model-f16.gguf" and mf["stop"] == ["<|im_end|>"]
    r = Renderer(load_tokenizer(tiny_model_dir))
    for conv in _conversations():
        assert ollama_render(mf, conv) == r.prompt_text(conv)


def _conversations():
    c = [{"role": "user", "content": TEXTS[2]}, {"role": "assistant", "content": "Sure.\n\nTwo lines"},
         {"role": "user", "content": "and {{ braces }} \"quotes\""}]
    return [c, [{"role": "system", "content": "You are terse."}] + c, c[:1],
            [{"role": "user", "content": "q"}, {"role": "assistant", "content": "call"},
             {"role": "tool", "content": "42"}, {"role": "assistant", "content": "It is 42."},
             {"role": "user", "content": "ok"}]]


SMOLLM_TEMPLATE = ("{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
                   "{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face"
                   "<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
                   "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}"
                   "{% endif %}")


@pytest.mark.parametrize("template", ["chatml", "chatml_tools", "llama3", "vicuna", "alpaca", SMOLLM_TEMPLATE])
def test_modelfile_template_for_each_shipped_template(template, tiny_tokenizer):
    """Every translatable template: the Go template + Modelfile SYSTEM renders exactly as we do."""
    from gotemplate import ollama_render, parse_modelfile

    from instructkit.chat.render import Renderer
    from instructkit.models.modelfile import measure, modelfile_text

    r = Renderer(tiny_tokenizer, template=template)
    shape = measure(lambda m, g: r.apply(m, add_generation_prompt=g))
    mf = parse_modelfile(modelfile_text("m.gguf", shape, [shape.end_of_turn]))
    if template in ("vicuna", "alpaca", SMOLLM_TEMPLATE):
        assert mf["system"] and mf["system"] in r.prompt_text([{"role": "user", "content": "x"}])
    convs = _conversations() if template != "llama3" else _conversations()[:3]  # llama3 has no tool role text
    for conv in convs:
        assert ollama_render(mf, conv) == r.prompt_text(conv), conv
    assert mf["stop"] == [{"llama3": "<|eot_id|>"}.get(template, "<|im_end|>")]


def test_untranslatable_template_is_said_in_the_modelfile(tiny_model_dir, tmp_path):
    path = export_gguf(tiny_model_dir, tmp_path / "out", template="plain")
    text = (path.parent / "Modelfile").read_text()
    assert "TEMPLATE" not in text.replace("# no TEMPLATE", "") and "not translatable" in text
    assert gguf.GGUFReader(str(path)).fields["tokenizer.chat_template"].contents().startswith("{#- For base")


def test_unsupported_architecture_names_what_is_supported(tmp_path):
    from transformers import GPT2Config, GPT2LMHeadModel

    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=300)).save_pretrained(tmp_path / "gpt2")
    with pytest.raises(InstructkitError, match=r"architecture 'gpt2'.*not supported; supported: llama"):
        export_gguf(tmp_path / "gpt2", tmp_path / "out")
    assert not (tmp_path / "out").exists()  # refused before anything was written
    with pytest.raises(InstructkitError, match="--quant 'q4_k'"):
        export_gguf(tmp_path / "gpt2", tmp_path / "out", quant="q4_k")


def test_out_rules_never_delete_the_users_files(tiny_model_dir, tmp_path):
    user = tmp_path / "mine"
    user.mkdir()
    (user / "notes.txt").write_text("keep me")
    with pytest.raises(InstructkitError, match="not empty and was not written by instructkit"):
        export_gguf(tiny_model_dir, user)
    assert sorted(p.name for p in user.iterdir()) == ["notes.txt"]
    path = export_gguf(tiny_model_dir, user, overwrite=True)
    assert (user / "notes.txt").read_text() == "keep me" and path.is_file()
    again = export_gguf(tiny_model_dir, user, quant="q8_0")  # now ours: a second export needs no flag
    assert (user / "notes.txt").is_file() and path.is_file() and again.is_file()
    assert not [p for p in user.iterdir() if p.name.startswith(".tmp-")]
    with pytest.raises(InstructkitError, match="holds the model"):
        export_gguf(tiny_model_dir, Path(tiny_model_dir).parent)


def test_failed_write_leaves_no_partial_file(tiny_model_dir, tmp_path, monkeypatch):
    import instructkit.models.gguf_export as ge

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ge, "write_gguf", boom)
    with pytest.raises(InstructkitError, match="no space left on device"):
        export_gguf(tiny_model_dir, tmp_path / "out")
    assert [p.name for p in (tmp_path / "out").iterdir()] == [".instructkit"]


def test_lora_adapter_exports_the_merged_model(tiny_model_dir, tmp_path):
    from peft import LoraConfig, get_peft_model

    from instructkit.models import load_model, load_tokenizer

    base = load_model(tiny_model_dir)
    peft = get_peft_model(base, LoraConfig(r=4, target_modules=["q_proj", "k_proj", "v_proj"], init_lora_weights=False))
    peft.save_pretrained(tmp_path / "adapter")
    cfg = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] == tiny_model_dir
    merged = peft.merge_and_unload().eval()
    path = export_gguf(tmp_path / "adapter", tmp_path / "out", quant="f32")
    tok = load_tokenizer(tiny_model_dir)
    got = load_model(str(path)).eval()
    for p in PROMPTS[:2]:
        assert torch.allclose(_logits(got, tok, p), _logits(merged, tok, p), atol=1e-5)
    card = (tmp_path / "out" / "README.md").read_text()
    assert f"**{tiny_model_dir}**" in card and "model-f32.gguf" in card


def test_cli_export_gguf(tiny_model_dir, tmp_path):
    from typer.testing import CliRunner

    from instructkit.cli import app

    res = CliRunner().invoke(app, ["export", "--adapter", tiny_model_dir, "--out", str(tmp_path / "o"),
                                   "--format", "gguf", "--quant", "q8_0"])
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == [".instructkit", "Modelfile", "README.md",
                                                                  "model-q8_0.gguf"]
    bad = CliRunner().invoke(app, ["export", "--adapter", tiny_model_dir, "--out", str(tmp_path / "p"),
                                   "--format", "onnx"])
    assert bad.exit_code != 0 and "choose hf or gguf" in str(bad.output) + str(bad.exception)


def test_pre_tokenizer_is_recognised_or_refused():
    from instructkit.models.gguf_vocab import _LLAMA3_REGEX, detect_pre

    assert detect_pre({"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}) == "gpt-2"
    assert detect_pre({"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True},
                                                             {"type": "ByteLevel", "use_regex": True}]}) == "smollm"
    assert detect_pre({"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": _LLAMA3_REGEX}, "behavior": "Isolated"},
        {"type": "ByteLevel", "use_regex": False}]}) == "llama-bpe"
    with pytest.raises(InstructkitError, match="supported: gpt-2, smollm, llama-bpe, qwen2"):
        detect_pre({"type": "Metaspace", "replacement": "\u2581"})
