"""``instructkit config``: the keys of a recipe, and validation of recipe files."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(no_args_is_help=True)


def split_recipe_args(config: Optional[Path], args: List[str]) -> tuple[Optional[Path], List[str]]:
    """``config show recipes/x.yaml train.lr=1e-4`` and ``config show --config recipes/x.yaml train.lr=1e-4``
    mean the same: a positional argument without ``=`` is the recipe file; the rest are overrides."""
    from instructkit.errors import ConfigError

    files = [a for a in args if "=" not in a]
    if len(files) > 1 or (files and config is not None):
        raise ConfigError(f"one recipe file, please (got {', '.join(map(str, ([config] if config else []) + files))})"
                          "; overrides are key=value")
    return (Path(files[0]) if files else config), [a for a in args if "=" in a]


@app.command("show")
def show(config: Optional[Path] = typer.Option(None, "--config", "-c", help="Recipe YAML to resolve (or give it "
                                                                              "as the first argument)."),
         overrides: Optional[List[str]] = typer.Argument(None, help="[RECIPE.yaml] then dotted overrides, e.g. "
                                                                    "train.lr=1e-4."),
         keys: bool = typer.Option(False, "--keys", help="List every key with type, default and doc.")) -> None:
    """Print the resolved recipe (defaults + file + overrides) as YAML, or all keys with --keys."""
    from instructkit.config.base import describe, dump_yaml, load_config
    from instructkit.config.recipe import Recipe

    config, overrides = split_recipe_args(config, list(overrides or []))

    if keys:
        t = Table("key", "type", "default", "doc", show_lines=False)
        for row in describe(Recipe):
            t.add_row(*row)
        Console().print(t)
        return
    typer.echo(dump_yaml(load_config(Recipe, config, overrides or [])), nl=False)


@app.command("check")
def check(files: Optional[List[Path]] = typer.Argument(None, help="Recipe YAML files."),
          config: Optional[List[Path]] = typer.Option(None, "--config", "-c", help="Recipe YAML (repeatable; "
                                                                                   "same as a positional file).")
          ) -> None:
    """Validate recipe files (unknown keys, wrong types); exit 2 on the first bad one."""
    from instructkit.config.base import load_config
    from instructkit.config.recipe import Recipe
    from instructkit.errors import ConfigError

    files = [*(config or []), *(files or [])]
    if not files:
        raise ConfigError("config check: name the recipe files (config check R.yaml or --config R.yaml)")
    for f in files:
        load_config(Recipe, f)
        typer.echo(f"ok  {f}")
