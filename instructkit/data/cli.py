"""``instructkit data``: inspect, prepare (data stage) and mix (task system)."""

from __future__ import annotations

from typing import Any, List, Optional

import typer

app = typer.Typer(no_args_is_help=True)

DEFAULT_MODEL = "smollm2-135m-instruct"
FORMAT_HELP = "Record format: auto, alpaca, sharegpt, openai, prompt_completion (auto: per file, first record)."
TRUNCATE_HELP = ("Examples longer than --max-length: right (cut the end), left_prompt (cut the start, keep the "
                 "answer), drop (drop them); drops are counted and located.")


def _console() -> Any:
    from rich.console import Console
    return Console()


def _tokenizer(model: str) -> Any:
    from instructkit.models import load_tokenizer
    return load_tokenizer(model)


def _print_report(console: Any, report: Any) -> None:
    console.print(report.summary(), highlight=False)
    if report.skipped.total:
        console.print(report.skipped)
    elif report.skipped.extras():
        console.print("\n".join(report.skipped.extras()), highlight=False, markup=False)
    for reason, n in report.dropped.counts.most_common():
        console.print(f"dropped ({reason}): {n}, e.g. " + "; ".join(report.dropped.examples.get(reason, [])),
                      highlight=False, markup=False)
    if report.dropped_total and report.drops_path:
        console.print(f"every drop, located: {report.drops_path}", highlight=False, markup=False)


@app.command()
def inspect(
    files: List[str] = typer.Argument(..., help="Data files, folders or globs."),
    model: str = typer.Option(DEFAULT_MODEL, help="Model whose tokenizer is used (alias, folder, .gguf)."),
    template: Optional[str] = typer.Option(None, help="Chat template (shipped name, .jinja file); default: the tokenizer's."),
    max_length: int = typer.Option(2048, "--max-length", min=1, help="Token budget per example (longer ones follow --truncate)."),
    truncate: str = typer.Option("right", "--truncate", help=TRUNCATE_HELP),
    format: str = typer.Option("auto", help=FORMAT_HELP),
    n: int = typer.Option(3, "--n", help="How many examples to show token by token."),
    html: Optional[str] = typer.Option(None, "--html", help="Write the token views + stats to this HTML file."),
    plot: Optional[str] = typer.Option(None, "--plot", help="Write the token-length histogram to this PNG."),
    on_error: str = typer.Option("skip", "--on-error", help="skip: count bad records and go on; raise: stop at the first."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Do not read or write the prepare cache."),
) -> None:
    """Show examples token by token (trained tokens highlighted) and stats: lengths, trained share, drops."""
    from pathlib import Path

    from rich.rule import Rule

    from instructkit.data.inspect import html_page, inspect_conversations, length_histogram, rich_view
    from instructkit.data.prepare import prepare_dataset
    from instructkit.data.readers import SkipReport, read_conversations

    console = _console()
    tok = _tokenizer(model)
    ds, report = prepare_dataset(files, tok, template=template, max_length=max_length, format=format,
                                 on_error=on_error, use_cache=not no_cache, progress=True, truncate=truncate)
    first = []
    if n > 0:  # the first n readable records (their own skip report: already counted above)
        for c in read_conversations(files, format=format, on_error="skip", report=SkipReport()):
            first.append(c)
            if len(first) == n:
                break
    result = inspect_conversations(first, tok, template=template, max_length=max_length, report=report,
                                   lengths=list(ds["length"]), n=n)
    for v in result.examples:
        console.print(Rule(f"{v.source}:{v.line}  {v.n_tokens} tokens, {v.n_trained} trained"
                           + (" (truncated)" if v.truncated else "")))
        console.print(rich_view(v))
    console.print(Rule("stats"))
    console.print(result.summary(), highlight=False, markup=False)
    if report.skipped.total:
        console.print(report.skipped)
    elif report.skipped.extras():
        console.print("\n".join(report.skipped.extras()), highlight=False, markup=False)
    if html:
        Path(html).parent.mkdir(parents=True, exist_ok=True)
        Path(html).write_text(html_page(result, f"instructkit data inspect: {', '.join(files)}"), encoding="utf-8")
        console.print(f"HTML: {html}")
    if plot:
        console.print(f"histogram: {length_histogram(result, plot, title=', '.join(files)[:80])}")


@app.command()
def prepare(
    args: Optional[List[str]] = typer.Argument(None, help="Data files/folders/globs, and dotted overrides (data.max_length=1024)."),
    config: Optional[str] = typer.Option(None, "--config", help="Recipe YAML (model: and data: sections are used)."),
    model: Optional[str] = typer.Option(None, help="Model whose tokenizer is used (overrides model.name_or_path)."),
    template: Optional[str] = typer.Option(None, help="Chat template (overrides model.chat_template)."),
    max_length: Optional[int] = typer.Option(None, "--max-length", min=1, help="Token budget per example (data.max_length)."),
    truncate: Optional[str] = typer.Option(None, "--truncate", help=TRUNCATE_HELP + " (data.truncate)"),
    format: Optional[str] = typer.Option(None, help=FORMAT_HELP),
    on_error: Optional[str] = typer.Option(None, "--on-error", help="raise (default) or skip (count and report)."),
    num_proc: Optional[int] = typer.Option(None, "--num-proc", help="Worker processes (data.num_proc)."),
    cache_dir: Optional[str] = typer.Option(None, "--cache-dir", help="Cache root (default ~/.cache/instructkit/data)."),
    limit: Optional[int] = typer.Option(None, help="Use at most this many examples."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Use --cache-dir even if it is a non-empty folder "
                                                              "that is not a prepare cache."),
) -> None:
    """Tokenize + mask data into a cached arrow dataset (a second run with the same inputs is instant)."""
    from pathlib import Path

    from instructkit.config.base import load_config, validate
    from instructkit.config.recipe import Recipe
    from instructkit.config.data import DataConfig
    from instructkit.data.prepare import prepare_dataset
    from instructkit.errors import ConfigError

    args = args or []
    # a positional argument is an override when it looks like key=value and is not an existing path
    overrides = [a for a in args if "=" in a and not Path(a).exists()]
    paths = [a for a in args if a not in overrides]
    recipe = load_config(Recipe, config, overrides)
    d, m = recipe.data, recipe.model
    cli = {"paths": paths or None, "max_length": max_length, "format": format, "on_error": on_error,
           "num_proc": num_proc, "cache_dir": cache_dir, "limit": limit, "truncate": truncate}
    merged = {**d.model_dump(), **{k: v for k, v in cli.items() if v is not None}}
    d = validate(DataConfig, merged, "data options")  # a bad option value is a ConfigError naming the key
    if not d.paths:
        raise ConfigError("no data files: pass paths or set data.paths in the recipe")
    from instructkit.data.prepare import default_cache_dir
    from instructkit.outputs import claim_output_dir

    # the cache root holds one <fingerprint> folder per prepared dataset (+ .tmp folders while writing)
    claim_output_dir(d.cache_dir or default_cache_dir(), "prepare-cache", overwrite=overwrite,
                     also_ours=lambda names: all(len(n.split(".")[0]) == 20 and n[:20].isalnum() for n in names))
    console = _console()
    tok = _tokenizer(model or m.name_or_path)
    ds, report = prepare_dataset(d.paths, tok, template=template or m.chat_template, max_length=d.max_length,
                                 format=d.format, on_error=d.on_error, cache_dir=d.cache_dir,
                                 num_proc=d.num_proc, limit=d.limit, progress=True, truncate=d.truncate,
                                 repair_leading_assistant=d.repair_leading_assistant)
    _print_report(console, report)
    console.print(f"dataset: {len(ds)} rows, columns {', '.join(ds.column_names)}")
    console.print(f"cache: {report.cache_path}")


def _register_tasks() -> None:
    # the task system (instructkit/data/tasks) owns `data mix` and friends
    from instructkit.data.tasks.cli import register
    register(app)


_register_tasks()
# tool use (issue 13): probe a chat template for training and tool calls
from instructkit.data.template_cli import template_check  # noqa: E402
app.command("template-check")(template_check)
