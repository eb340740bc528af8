"""``instructkit tools``: build a retrieval index, run a tool call by hand, convert GSM8K to tool data."""

from __future__ import annotations

import json
from typing import List, Optional

import typer

app = typer.Typer(no_args_is_help=True)


@app.command()
def index(
    files: List[str] = typer.Argument(..., help="JSONL (text/content/passage, title?, id?), .txt/.md files or folders."),
    out: str = typer.Option(..., "--out", help="Index folder to write (used by --tools search --index DIR)."),
) -> None:
    """Build a BM25 index over your own documents (one passage per JSONL record or text paragraph)."""
    from rich.console import Console

    from instructkit.toolset.retrieval import BM25Index, read_documents

    docs = list(read_documents(files))
    path = BM25Index.build(docs).save(out, sources=files)
    Console().print(f"indexed {len(docs)} passages from {len(files)} path(s) -> {path}")


@app.command()
def call(
    tool: str = typer.Argument(..., help="Tool: calculator, search, or module.path:function."),
    arguments: str = typer.Argument(..., help='JSON arguments, e.g. \'{"expression": "48/2"}\'.'),
    index_dir: Optional[str] = typer.Option(None, "--index", help="Index folder for the search tool."),
) -> None:
    """Run one tool call the way the loop does and print the result (errors are results too; a failed call
    exits 2, like every other error of the CLI)."""
    from instructkit.chat.conversation import ToolCall
    from instructkit.errors import InstructkitError
    from instructkit.toolset.registry import load_toolset

    try:
        args = json.loads(arguments)
    except ValueError as e:
        raise InstructkitError(f"arguments are not JSON: {e}") from None
    ts = load_toolset(tool, **({"index": index_dir} if index_dir else {}))
    res = ts.run(ToolCall(next(iter(ts.tools)), args))
    typer.echo(res.content)
    if not res.ok:
        raise typer.Exit(2)


@app.command("convert-gsm8k")
def convert_gsm8k_cmd(
    source: str = typer.Argument(..., help="GSM8K JSONL (question, answer with <<a=b>> annotations)."),
    out: str = typer.Option(..., "--out", help="Output JSONL (OpenAI messages with tool_calls)."),
    limit: Optional[int] = typer.Option(None, help="Keep at most this many conversations."),
    no_tools: bool = typer.Option(False, "--no-tools", help="Plain CoT instead (annotations removed)."),
) -> None:
    """Turn GSM8K calculator annotations into tool-call conversations (rejections counted by reason)."""
    from instructkit.tools.convert import convert_gsm8k

    rep = convert_gsm8k(source, out, limit=limit, tools=not no_tools)
    typer.echo(json.dumps(rep, indent=1))
