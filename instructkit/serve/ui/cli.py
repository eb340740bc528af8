"""``instructkit arena MODEL [--adapter NAME=PATH ...]`` or ``instructkit arena --url http://host/v1``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

import typer

from instructkit.errors import InstructkitError
from instructkit.serve.cli import API_KEY_ENV


def arena(
    model: Optional[str] = typer.Argument(None, help="Base model (as for serve); omit with --url."),
    adapter: List[str] = typer.Option([], "--adapter", help="LoRA adapter NAME=PATH (repeatable): each is a "
                                                              "contestant, as is the base."),
    url: Optional[str] = typer.Option(None, "--url", help="Use the models of this OpenAI-compatible server "
                                                          "(http://host:port/v1) instead of loading MODEL."),
    models: Optional[str] = typer.Option(None, "--models", help="Comma-separated contestants (default: every "
                                                                "served model)."),
    url_api_key_env: str = typer.Option("OPENAI_API_KEY", help="Env variable with the --url server's key."),
    votes: Path = typer.Option(Path("arena/votes.jsonl"), "--votes", help="Vote log (JSONL, appended; "
                               "`instructkit eval leaderboard --battles` reads it)."),
    judge_battles: List[Path] = typer.Option([], "--judge-battles", help="battles.jsonl of `eval judge --mode "
                                             "pairwise`: the judge's ratings as a separate column (repeatable)."),
    host: str = typer.Option("127.0.0.1", help="Bind address (localhost only unless you say otherwise)."),
    port: int = typer.Option(8000, help="Port."),
    api_key: Optional[str] = typer.Option(None, "--api-key", help=f"Key for the API and the UI's login (or env "
                                                                   f"{API_KEY_ENV})."),
    served_model_name: Optional[str] = typer.Option(None, help="Name of the base (default: MODEL's folder name)."),
    dtype: str = typer.Option("float32", help="float32 | bfloat16 | float16."),
    chat_template: Optional[str] = typer.Option(None, help="Chat template (default: the tokenizer's own)."),
    max_batch_size: int = typer.Option(32, help="Sequences decoded together at most."),
    max_queue: int = typer.Option(256, help="Sequences waiting + running before requests get 429."),
    threads: Optional[int] = typer.Option(None, help="torch CPU threads."),
    max_turns: int = typer.Option(8, help="User turns per battle or playground chat."),
    max_tokens: int = typer.Option(512, help="Tokens per reply at most (the page's slider stops there)."),
    max_prompt_chars: int = typer.Option(8000, help="Characters per message at most."),
    max_battles: int = typer.Option(64, help="Live battles at most (then 429)."),
    bootstrap: int = typer.Option(1000, help="Bootstrap rounds for the leaderboard's CIs (as eval leaderboard)."),
    permutations: int = typer.Option(100, help="Shuffled orders for the median Elo (as eval leaderboard)."),
    seed: int = typer.Option(0, help="Seed for resampling and shuffling (as eval leaderboard)."),
) -> None:
    """Web arena: Playground, anonymous side-by-side Battle with votes, Leaderboard (Bradley-Terry, Elo, CIs)."""
    import logging

    import uvicorn

    from instructkit.serve.ui.app import Limits
    from instructkit.serve.ui.run import display_name, local_arena, remote_arena

    if (model is None) == (url is None):
        raise InstructkitError("give MODEL (served here) or --url (an OpenAI-compatible server), not both")
    if url and adapter:
        raise InstructkitError("--adapter loads adapters here; with --url the server there has its own")
    key = api_key or os.environ.get(API_KEY_ENV) or None
    if host not in ("127.0.0.1", "localhost", "::1") and not key:
        typer.echo(f"warning: arena on {host} without --api-key: anyone who can reach it can use and vote", err=True)
    limits = Limits(max_turns=max_turns, max_tokens=max_tokens, max_prompt_chars=max_prompt_chars,
                    max_battles=max_battles)
    picked = [m.strip() for m in models.split(",") if m.strip()] if models else None
    kw = dict(judge_battles=judge_battles, limits=limits, bootstrap=bootstrap, permutations=permutations, seed=seed)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if url:
        app, st = remote_arena(url, os.environ.get(url_api_key_env) or None, votes, key, models=picked, **kw)
        names = ", ".join(picked or ["(asked from the server)"])
    else:
        from instructkit.serve.adapters import ServedModels, load_served, parse_adapter_specs
        from instructkit.serve.app import ServerState
        from instructkit.serve.server import load_in_background

        if threads:
            import torch
            torch.set_num_threads(threads)
        adapters = parse_adapter_specs(adapter)
        served = ServedModels(served_model_name or display_name(model), adapters)
        known = [c["id"] for c in served.cards()]
        unknown = sorted(set(picked or []) - set(known))
        if unknown:
            raise InstructkitError(f"--models: {', '.join(unknown)} not served (served: {', '.join(known)})")
        state = ServerState(served, api_key=key)
        load_in_background(state, lambda: load_served(model, adapters, dtype=dtype, chat_template=chat_template,
                                                      max_batch_size=max_batch_size, max_queue=max_queue))
        app, st = local_arena(state, host, port, votes, models=picked, **kw)
        names = ", ".join(picked or known)
    typer.echo(f"instructkit arena: http://{host}:{port}/ui/ (contestants: {names}; {len(st.votes)} votes in "
               f"{votes}; login {'required' if key else 'not required'})"
               + ("" if url else f"; OpenAI API on http://{host}:{port}/v1"), err=True)
    if st.votes.torn_bytes:
        typer.echo(f"note: a partial last line ({st.votes.torn_bytes} bytes, never acknowledged) was moved to "
                   f"{votes}.torn", err=True)
    uvicorn.run(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=2)
