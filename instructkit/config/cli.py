"""``instructkit config``: the keys of a recipe, and validation of recipe files."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(no_args_is_help=True)


@app.command("show")
def show(config: Optional[Path] = typer.Option(None, "--config", "-c", help="Recipe YAML to resolve."),
         overrides: Optional[List[str]] = typer.Argument(None, help="Dotted overrides, e.g. train.lr=1e-4."),
         keys: bool = typer.Option(False, "--keys", help="List every key with type, default and doc.")) -> None:
    """Print the resolved recipe (defaults + file + overrides) as YAML, or all keys with --keys."""
    from instructkit.config.base import describe, dump_yaml, load_config
    from instructkit.config.recipe import Recipe

    if keys:
        t = Table("key", "type", "default", "doc", show_lines=False)
        for row in describe(Recipe):
            t.add_row(*row)
        Console().print(t)
        return
    typer.echo(dump_yaml(load_config(Recipe, config, overrides or [])), nl=False)


@app.command("check")
def check(files: List[Path] = typer.Argument(..., help="Recipe YAML files.")) -> None:
    """Validate recipe files (unknown keys, wrong types); exit 2 on the first bad one."""
    from instructkit.config.base import load_config
    from instructkit.config.recipe import Recipe

    for f in files:
        load_config(Recipe, f)
        typer.echo(f"ok  {f}")
