"""``instructkit chat MODEL`` / ``instructkit chat --url URL``: a terminal chat with streamed replies.

One code path for both: with MODEL the server is started in-process on a free localhost port (same
engine, same renderer), so local and remote chats behave identically. Commands: ``/reset`` (forget the
history), ``/system TEXT`` (set the system prompt and reset), ``/exit`` (or Ctrl-D). Ctrl-C during a reply
stops that reply (the request is closed, so the server stops generating) and returns to the prompt with
the history kept; the part of the reply already shown stays in the history.
"""

from __future__ import annotations

import json
import os
from typing import Any, Callable, Iterator, List, Optional

import typer

from instructkit.errors import InstructkitError

HELP = "commands: /reset  /system TEXT  /exit"


def stream_reply(url: str, key: Optional[str], payload: dict[str, Any]) -> Iterator[str]:
    """POST a streaming chat completion; yield content deltas; raise InstructkitError on any error."""
    import httpx

    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        with httpx.stream("POST", f"{url}/chat/completions", json=dict(payload, stream=True), headers=headers,
                          timeout=httpx.Timeout(600.0, connect=10.0)) as r:
            if r.status_code >= 400:
                r.read()
                try:
                    msg = r.json()["error"]["message"]
                except Exception:
                    msg = r.text[:300]
                raise InstructkitError(f"{url}: HTTP {r.status_code}: {msg}")
            for line in r.iter_lines():
                if not line.startswith("data: "):
                    continue
                data = line[6:]
                if data == "[DONE]":
                    return
                obj = json.loads(data)
                if "error" in obj:
                    raise InstructkitError(f"{url}: {obj['error'].get('message')}")
                for c in obj.get("choices", []):
                    piece = (c.get("delta") or {}).get("content")
                    if piece:
                        yield piece
    except httpx.HTTPError as e:
        raise InstructkitError(f"cannot reach {url} ({type(e).__name__}: {e})") from None


def first_model(url: str, key: Optional[str], wait: float = 300.0) -> str:
    import httpx
    import time
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    deadline = time.time() + wait
    while True:
        try:
            r = httpx.get(f"{url}/models", headers=headers, timeout=10)
        except httpx.HTTPError as e:
            raise InstructkitError(f"cannot reach {url} ({type(e).__name__}: {e})") from None
        if r.status_code != 503 or time.time() > deadline:  # 503: the server is still loading the model
            break
        time.sleep(float(r.headers.get("retry-after", "2")))
    if r.status_code >= 400:
        raise InstructkitError(f"{url}/models: HTTP {r.status_code}: {r.text[:200]}")
    return r.json()["data"][0]["id"]


def chat_loop(send: Callable[[list[dict[str, str]]], Iterator[str]], read: Callable[[str], str] = input,
              write: Callable[[str], None] = lambda s: print(s, end="", flush=True),
              system: Optional[str] = None) -> list[dict[str, str]]:
    """The REPL; returns the history at exit (for tests). ``send(messages)`` streams the reply."""
    history: list[dict[str, str]] = []
    write(HELP + "\n")
    while True:
        try:
            line = read("you> ").strip()
        except (EOFError, KeyboardInterrupt):
            write("\n")
            return history
        if not line:
            continue
        if line in ("/exit", "/quit"):
            return history
        if line == "/reset":
            history = []
            write("(history cleared)\n")
            continue
        if line.startswith("/system"):
            system = line[len("/system"):].strip() or None
            history = []
            write(f"(system prompt {'set' if system else 'cleared'}; history cleared)\n")
            continue
        if line.startswith("/"):
            write(f"unknown command {line.split()[0]}; {HELP}\n")
            continue
        msgs = ([{"role": "system", "content": system}] if system else []) + history + [{"role": "user", "content": line}]
        write("assistant> ")
        reply, stopped = _echo(send(msgs), write)
        write("\n(reply stopped)\n" if stopped else "\n")
        if reply or not stopped:
            history += [{"role": "user", "content": line}, {"role": "assistant", "content": reply}]


def _echo(pieces: Iterator[str], write: Callable[[str], None]) -> tuple[str, bool]:
    """Show the reply as it streams; ``(text shown, stopped by Ctrl-C)``."""
    shown: list[str] = []
    try:
        for p in pieces:
            write(p)
            shown.append(p)
    except KeyboardInterrupt:
        close = getattr(pieces, "close", None)
        if close is not None:
            try:
                close()  # ends the HTTP stream: the server cancels the generation
            except Exception:
                pass
        return "".join(shown), True
    return "".join(shown), False


def chat(
    model: Optional[str] = typer.Argument(None, help="Model to load locally (alias, folder, .gguf, adapter)."),
    url: Optional[str] = typer.Option(None, help="Chat with a running server instead (e.g. http://127.0.0.1:8000/v1)."),
    adapter: List[str] = typer.Option([], "--adapter", help="LoRA adapter NAME=PATH (local model only)."),
    use: Optional[str] = typer.Option(None, "--model-name", help="Which served model/adapter to talk to."),
    api_key: Optional[str] = typer.Option(None, "--api-key", help="API key for --url (or env INSTRUCTKIT_API_KEY)."),
    system: Optional[str] = typer.Option(None, help="System prompt."),
    max_tokens: int = typer.Option(512, help="Longest reply in tokens."),
    temperature: float = typer.Option(0.7, help="Sampling temperature (0 = greedy)."),
    tools: Optional[str] = typer.Option(None, "--tools", help="Tools the model may call: calculator, search, "
                                        "module.path:function (comma-separated); run here, shown inline."),
    index: Optional[str] = typer.Option(None, "--index", help="Retrieval index for --tools search."),
    tools_template: str = typer.Option("chatml_tools", "--tools-template", help="Chat template for the local "
                                       "model with --tools (must render tools; see `instructkit data template-check`)."),
) -> None:
    """Chat in the terminal with a model (loaded here) or a running `instructkit serve` (--url)."""
    if (model is None) == (url is None):
        raise InstructkitError("give either MODEL (load it here) or --url (a running server), not both/neither")
    key = api_key or os.environ.get("INSTRUCTKIT_API_KEY")
    server = None
    if model is not None:
        from instructkit.serve.adapters import ServedModels, load_served, parse_adapter_specs
        from instructkit.serve.server import serve_engine
        adapters = parse_adapter_specs(adapter)
        typer.echo(f"loading {model} ...", err=True)
        template = tools_template if tools else None  # issue #13: a tools-aware template for --tools
        engine, tok, _ = load_served(model, adapters, chat_template=template)
        server = serve_engine(engine, tok, ServedModels(model, adapters), chat_template=template)
        url, key = server.url, None
    assert url is not None
    url = url.rstrip("/")
    url = url if url.endswith("/v1") else url + "/v1"
    name = use or first_model(url, key)
    send = lambda msgs: stream_reply(url, key, dict(model=name, messages=msgs, max_tokens=max_tokens,  # noqa: E731
                                                     temperature=temperature))
    if tools:  # tool calls come back as tool_calls; they are run here and the results sent back
        from instructkit.toolset.chat import tool_sender
        from instructkit.toolset.registry import load_toolset
        send = tool_sender(url, key, name, load_toolset(tools, **({"index": index} if index else {})),
                           max_tokens=max_tokens, temperature=temperature, note=lambda s: typer.echo(s))
    try:
        chat_loop(send, system=system)
    finally:
        if server is not None:
            server.close()
