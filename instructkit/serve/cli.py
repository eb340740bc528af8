"""``instructkit serve MODEL [--adapter NAME=PATH ...]``: the OpenAI-compatible server."""

from __future__ import annotations

import os
from typing import List, Optional

import typer

from instructkit.errors import InstructkitError

API_KEY_ENV = "INSTRUCTKIT_API_KEY"


def serve(
    model: str = typer.Argument(..., help="Base model: alias, HF folder, .gguf, LoRA adapter folder, or hub id."),
    adapter: List[str] = typer.Option([], "--adapter", help="LoRA adapter NAME=PATH (repeatable); clients "
                                                              "pick it with model=NAME."),
    host: str = typer.Option("127.0.0.1", help="Bind address (localhost only unless you say otherwise)."),
    port: int = typer.Option(8000, help="Port."),
    api_key: Optional[str] = typer.Option(None, "--api-key", help=f"Required API key (or env {API_KEY_ENV}); "
                                                                   "checked on every route but /health."),
    served_model_name: Optional[str] = typer.Option(None, help="Name clients use for the base (default: MODEL)."),
    engine: str = typer.Option("hf", help="hf (built-in continuous batching) | vllm (GPU, if installed)."),
    dtype: Optional[str] = typer.Option(None, help="auto | float32 | bfloat16 | float16 (default: auto on a GPU "
                                                    "- bf16, fp16 before Ampere; float32 on CPU)."),
    max_model_len: Optional[int] = typer.Option(None, "--max-model-len", help="vllm: context length to reserve "
                                                "KV cache for (default: the model's; lower it to fit memory)."),
    chat_template: Optional[str] = typer.Option(None, help="Chat template (default: the tokenizer's own)."),
    max_batch_size: int = typer.Option(32, help="Sequences decoded together at most."),
    max_queue: int = typer.Option(256, help="Sequences waiting + running before requests get 429."),
    default_max_tokens: int = typer.Option(1024, help="Chat completion length when the request gives none."),
    threads: Optional[int] = typer.Option(None, help="torch CPU threads (default: torch's choice; on a shared "
                                                      "CPU 1 avoids OpenMP spin-waiting)."),
    run_tools: Optional[str] = typer.Option(None, "--run-tools", help="Run these tools in the server (e.g. "
                                            "calculator,search): every chat request is offered them and gets the "
                                            "final answer; chat template default chatml_tools."),
    index: Optional[str] = typer.Option(None, "--index", help="Retrieval index folder for --run-tools search."),
    max_tool_calls: int = typer.Option(4, "--max-tool-calls", help="Tool calls the server runs per reply at most."),
) -> None:
    """Serve MODEL (and LoRA adapters) over the OpenAI API: /v1/chat/completions, /v1/completions, /v1/models."""
    import logging

    from instructkit.serve.adapters import ServedModels, load_served, parse_adapter_specs

    key = api_key or os.environ.get(API_KEY_ENV) or None
    adapters = parse_adapter_specs(adapter)
    name = served_model_name or model
    if engine == "vllm":
        from instructkit.serve.vllm_engine import serve_vllm
        return serve_vllm(model, adapters, host=host, port=port, api_key=key, served_model_name=name,
                          dtype=dtype or "auto", chat_template=chat_template, max_model_len=max_model_len)
    if dtype is None:
        import torch
        dtype = "auto" if torch.cuda.is_available() else "float32"
    if engine != "hf":
        raise InstructkitError(f"--engine {engine!r}: choose hf or vllm")
    server_tools = None
    if run_tools:  # issue #13: the server runs our toolset itself (loaded now: a bad spec fails before serving)
        from instructkit.serve.tools import ServerTools
        server_tools = ServerTools.load(run_tools, index=index, max_calls=max_tool_calls)
        chat_template = chat_template or "chatml_tools"
    if host not in ("127.0.0.1", "localhost", "::1") and not key:
        typer.echo(f"warning: serving on {host} without an API key: anyone who can reach it can use it", err=True)
    import uvicorn
    if threads:
        import torch
        torch.set_num_threads(threads)

    from instructkit.serve.app import ServerState, build_app
    from instructkit.serve.server import load_in_background

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    state = ServerState(ServedModels(name, adapters), api_key=key, default_max_tokens=default_max_tokens)
    state.server_tools = server_tools
    load_in_background(state, lambda: load_served(model, adapters, dtype=dtype, chat_template=chat_template,
                                                  max_batch_size=max_batch_size, max_queue=max_queue))
    typer.echo(f"instructkit serve: {name} on http://{host}:{port}/v1 (models: {', '.join([name, *adapters])}; "
               f"API key {'required' if key else 'not required'})", err=True)
    # uvicorn's access log records method, path and status only: never headers, so never the key
    uvicorn.run(build_app(state), host=host, port=port, log_level="info", timeout_graceful_shutdown=2)
