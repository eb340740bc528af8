"""``serve --engine vllm``: the command line built for vLLM's OpenAI server (vLLM itself needs a GPU)."""

from __future__ import annotations

import json

from instructkit.serve.vllm_engine import vllm_command


def _adapter(path, r, base="/models/base"):
    path.mkdir()
    (path / "adapter_config.json").write_text(json.dumps({"r": r, "base_model_name_or_path": base,
                                                          "peft_type": "LORA"}))
    return str(path)


def _opt(cmd, flag):
    return cmd[cmd.index(flag) + 1]


def test_adapter_folder_as_the_model_serves_its_base_with_the_adapter(tmp_path):
    ad = _adapter(tmp_path / "qlora", r=64)  # the QLoRA recipe's rank: vLLM's default --max-lora-rank 16 refuses it
    cmd = vllm_command(ad, {}, host="127.0.0.1", port=8000, served_model_name="mine", dtype="bfloat16",
                       chat_template=None, max_model_len=4096)
    assert _opt(cmd, "--model") == "/models/base"
    assert _opt(cmd, "--lora-modules") == f"mine={ad}"  # clients asking for "mine" get the fine-tuned model
    assert _opt(cmd, "--served-model-name") == "mine-base"
    assert "--enable-lora" in cmd and _opt(cmd, "--max-lora-rank") == "64" and _opt(cmd, "--max-loras") == "1"
    assert _opt(cmd, "--dtype") == "bfloat16" and _opt(cmd, "--max-model-len") == "4096"


def test_several_adapters_rank_rounded_up_and_base_override(tmp_path):
    a, b = _adapter(tmp_path / "a", r=8), _adapter(tmp_path / "b", r=40)
    cmd = vllm_command("/models/full", {"a": a, "b": b}, host="0.0.0.0", port=1, served_model_name="base",
                       dtype="auto", chat_template=None)
    assert _opt(cmd, "--model") == "/models/full" and _opt(cmd, "--served-model-name") == "base"
    assert _opt(cmd, "--max-lora-rank") == "64" and _opt(cmd, "--max-loras") == "2"  # 40 -> 64 (vLLM's ranks)
    assert cmd[cmd.index("--lora-modules") + 1:cmd.index("--lora-modules") + 3] == [f"a={a}", f"b={b}"]
    assert "--max-model-len" not in cmd
    ad = _adapter(tmp_path / "c", r=16, base="HuggingFaceTB/SmolLM2-135M-Instruct")
    cmd = vllm_command(ad, {}, host="h", port=1, served_model_name="n", dtype="auto", chat_template=None,
                       base_path="/cache/smollm2")  # the base as resolved locally (alias, cache)
    assert _opt(cmd, "--model") == "/cache/smollm2"


def test_full_model_without_adapters_has_no_lora_flags():
    cmd = vllm_command("/models/full", {}, host="h", port=1, served_model_name="n", dtype="auto", chat_template=None)
    assert "--enable-lora" not in cmd and "--max-lora-rank" not in cmd
    assert _opt(cmd, "--dtype") == "auto"
