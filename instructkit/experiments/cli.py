"""``instructkit experiment heldout`` / ``instructkit experiment t0-bigbench``: the held-out experiments.

Both train "tuned" (the mixture without the held-out tasks) and "oracle" (the held-out tasks' own
training splits), then write the held-out report; the recipe fixes everything else, and dotted
overrides change it as for every other command.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import List, Optional

import typer

app = typer.Typer(no_args_is_help=True, rich_markup_mode="rich", pretty_exceptions_enable=False)

_RECIPE = typer.Argument(..., help="Recipe YAML (e.g. recipes/flan_heldout.yaml).")
_OVERRIDES = typer.Argument(None, help="Dotted overrides, e.g. train.max_steps=50 mix.total=200.")
_OUT = typer.Option(None, "--out", help="Output folder (default: the recipe's output_dir).")
_LIMIT = typer.Option(300, "--limit", help="Distinct evaluation examples per held-out task.")
_TEMPLATES = typer.Option("one", "--templates", help="'all': every template on each example; 'one': one per "
                                                      "example, rotated over all templates.")
_ORACLE_N = typer.Option(300, "--oracle-per-task", help="Oracle training rows per held-out task.")
_NO_ORACLE = typer.Option(False, "--no-oracle", help="Skip the oracle (the upper-bound control).")
_MAX_SEEN = typer.Option(4, "--max-seen", help="Seen tasks evaluated as the sanity check.")
_SEEDS = typer.Option(3, "--seeds", help="Training seeds for tuned and oracle (mixture draw + init); the verdict "
                                         "rules read every seed (issue #25).")


def _load(recipe: Path, overrides: Optional[List[str]]):  # noqa: ANN202
    from instructkit.config.base import load_config
    from instructkit.config.recipe import Recipe
    return load_config(Recipe, recipe, overrides or [])


def _check_templates(templates: str) -> None:
    from instructkit.errors import ConfigError
    if templates not in ("all", "one"):
        raise ConfigError(f"--templates must be 'all' or 'one', got {templates!r}")


def _command() -> str:
    return "instructkit " + " ".join(map(shlex.quote, sys.argv[1:]))


@app.command("heldout")
def heldout_cmd(recipe: Path = _RECIPE, overrides: Optional[List[str]] = _OVERRIDES,
                out: Optional[Path] = _OUT, limit: int = _LIMIT, templates: str = _TEMPLATES,
                oracle_per_task: int = _ORACLE_N, no_oracle: bool = _NO_ORACLE, max_seen: int = _MAX_SEEN,
                seeds: int = _SEEDS) -> None:
    """FLAN-style held-out clusters: tuned and oracle training, then base / tuned / oracle with 95% CIs."""
    from rich.console import Console

    from instructkit.eval.cli import print_report
    from instructkit.experiments.heldout import run_heldout

    _check_templates(templates)
    r = _load(recipe, overrides)
    con = Console()
    rep = run_heldout(r, out or r.resolved_output_dir(), oracle=not no_oracle, oracle_per_task=oracle_per_task,
                      limit=limit, templates=templates, max_seen=max_seen, console=con, command=_command(), seeds=seeds)
    print_report(con, rep)


@app.command("t0-bigbench")
def t0_bigbench_cmd(recipe: Path = _RECIPE, overrides: Optional[List[str]] = _OVERRIDES,
                    bigbench: Optional[Path] = typer.Option(None, "--bigbench", help="Unpacked bigbench sdist "
                                                            "(default: $INSTRUCTKIT_BIGBENCH)."),
                    out: Optional[Path] = _OUT, limit: int = _LIMIT, templates: str = _TEMPLATES,
                    oracle_per_task: int = _ORACLE_N, no_oracle: bool = _NO_ORACLE,
                    max_seen: int = _MAX_SEEN, seeds: int = _SEEDS) -> None:
    """T0 -> BIG-bench: train on the T0 mixture, evaluate zero-shot on BIG-bench tasks it does not contain."""
    from rich.console import Console

    from instructkit.eval.cli import print_report
    from instructkit.experiments.t0_bigbench import run_t0_bigbench

    _check_templates(templates)
    r = _load(recipe, overrides)
    con = Console()
    rep = run_t0_bigbench(r, out or r.resolved_output_dir(), bigbench_dir=bigbench, eval_n=limit,
                          oracle=not no_oracle, oracle_per_task=oracle_per_task, templates=templates,
                          max_seen=max_seen, console=con, command=_command(), seeds=seeds)
    print_report(con, rep)
