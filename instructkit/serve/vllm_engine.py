"""``instructkit serve --engine vllm``: hand serving to vLLM's own OpenAI-compatible server.

vLLM already speaks the same API (chat/completions/models, SSE, multi-LoRA via ``--lora-modules``), so we
translate our options to its command line instead of writing a second serving layer. The API key goes
through the environment (``VLLM_API_KEY``), never the command line, where ``ps`` would show it.
Not tested here (no GPU on the project's machines); on a machine without vLLM or CUDA it stops with a
clear message.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from typing import Optional

from instructkit.errors import InstructkitError


def vllm_command(model_path: str, adapters: dict[str, str], *, host: str, port: int, served_model_name: str,
                 dtype: str, chat_template: Optional[str]) -> list[str]:
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model_path,
           "--served-model-name", served_model_name, "--host", host, "--port", str(port), "--dtype", dtype]
    if adapters:
        cmd += ["--enable-lora", "--lora-modules", *[f"{n}={p}" for n, p in adapters.items()]]
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
               served_model_name: str, dtype: str, chat_template: Optional[str]) -> None:
    check_vllm()
    from instructkit.models import resolve_model

    cmd = vllm_command(resolve_model(model), adapters, host=host, port=port, served_model_name=served_model_name,
                       dtype=dtype, chat_template=chat_template)
    env = dict(os.environ)
    if api_key:
        env["VLLM_API_KEY"] = api_key
    rc = subprocess.call(cmd, env=env)
    if rc:
        raise InstructkitError(f"vLLM server exited with status {rc}")
