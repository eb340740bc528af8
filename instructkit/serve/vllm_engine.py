"""``instructkit serve --engine vllm``: hand serving to vLLM's own OpenAI-compatible server.

vLLM already speaks the same API (chat/completions/models, SSE, multi-LoRA via ``--lora-modules``), so we
translate our options to its command line instead of writing a second serving layer. The API key goes
through the environment (``VLLM_API_KEY``), never the command line, where ``ps`` would show it.
The command line is unit-tested; the server itself needs vLLM and a GPU (on a machine without them it
stops with a clear message).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Optional

from instructkit.errors import InstructkitError


#: the LoRA ranks vLLM accepts for --max-lora-rank (its default, 16, rejects the QLoRA recipe's r=64)
VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256, 320, 512)


def adapter_info(path: str) -> dict | None:
    """``adapter_config.json`` of a LoRA adapter folder, or None for a full model."""
    cfg = Path(path) / "adapter_config.json"
    return json.loads(cfg.read_text()) if cfg.is_file() else None


def vllm_command(model_path: str, adapters: dict[str, str], *, host: str, port: int, served_model_name: str,
                 dtype: str, chat_template: Optional[str], max_model_len: Optional[int] = None,
                 base_path: Optional[str] = None) -> list[str]:
    """vLLM's OpenAI server command line. An adapter folder given as the model serves its base (``base_path``,
    default the adapter's ``base_model_name_or_path``) with the adapter under ``served_model_name``; LoRA
    serving gets ``--max-lora-rank`` (the largest adapter rank, rounded up to a rank vLLM accepts) and
    ``--max-loras`` (all adapters resident at once)."""
    adapters = dict(adapters)
    info = adapter_info(model_path)
    if info is not None:
        adapters = {served_model_name: model_path, **adapters}
        model_path = base_path or info["base_model_name_or_path"]
        served_model_name = f"{served_model_name}-base"
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model_path,
           "--served-model-name", served_model_name, "--host", host, "--port", str(port), "--dtype", dtype]
    if max_model_len:
        cmd += ["--max-model-len", str(max_model_len)]
    if adapters:
        ranks = [int((adapter_info(p) or {}).get("r", 16)) for p in adapters.values()]
        rank = next((r for r in VLLM_LORA_RANKS if r >= max(ranks)), max(ranks))
        cmd += ["--enable-lora", "--max-lora-rank", str(rank), "--max-loras", str(len(adapters)),
                "--lora-modules", *[f"{n}={p}" for n, p in adapters.items()]]
    if chat_template:
        from instructkit.chat.render import resolve_template
        import tempfile
        f = tempfile.NamedTemporaryFile("w", suffix=".jinja", delete=False)
        f.write(resolve_template(chat_template))
        f.close()
        cmd += ["--chat-template", f.name]
    return cmd


def check_vllm() -> None:
    if importlib.util.find_spec("vllm") is None:
        raise InstructkitError("--engine vllm: vLLM is not installed (pip install vllm; it needs a CUDA GPU). "
                               "Use --engine hf (the built-in engine) on this machine.")
    import torch
    if not torch.cuda.is_available():
        raise InstructkitError("--engine vllm: no CUDA GPU is visible; vLLM does not serve on this CPU. "
                               "Use --engine hf (the built-in engine).")


def serve_vllm(model: str, adapters: dict[str, str], *, host: str, port: int, api_key: Optional[str],
               served_model_name: str, dtype: str, chat_template: Optional[str],
               max_model_len: Optional[int] = None) -> None:
    check_vllm()
    from instructkit.models import resolve_model

    path = resolve_model(model)
    info = adapter_info(path)
    base = resolve_model(info["base_model_name_or_path"]) if info is not None else None
    cmd = vllm_command(path, {n: resolve_model(p) for n, p in adapters.items()}, host=host, port=port,
                       served_model_name=served_model_name, dtype=dtype, chat_template=chat_template,
                       max_model_len=max_model_len, base_path=base)
    env = dict(os.environ)
    if api_key:
        env["VLLM_API_KEY"] = api_key
    rc = subprocess.call(cmd, env=env)
    if rc:
        raise InstructkitError(f"vLLM server exited with status {rc}")
