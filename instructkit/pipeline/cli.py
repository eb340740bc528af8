"""``instructkit run RECIPE.yaml [overrides] [--until S] [--from S] [--dry-run]``."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer


def run_cmd(recipe: Path = typer.Argument(..., help="Recipe YAML (recipes/*.yaml)."),
            overrides: Optional[List[str]] = typer.Argument(
                None, help="Dotted overrides: train.lr=1e-4, stages.eval.config.eval.limit=8."),
            until: Optional[str] = typer.Option(None, "--until", help="Run only this stage and what it needs."),
            start: Optional[str] = typer.Option(None, "--from", help="Re-run this stage and everything downstream, "
                                                                     "even if cached (their previous outputs in the "
                                                                     "run folder are replaced)."),
            dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan (cached / will run / why); run "
                                                                  "nothing."),
            overwrite: bool = typer.Option(False, "--overwrite", help="Write into an output_dir that holds other "
                                                                      "files.")) -> None:
    """Run a recipe's stages (mix, synth, train, eval, report, ...); finished stages are cached by fingerprint."""
    from rich.console import Console

    from instructkit.config.base import load_config
    from instructkit.pipeline.runner import run
    from instructkit.config.recipe import Recipe

    con = Console()
    r = load_config(Recipe, recipe, overrides or [])
    con.print(f"[bold]{r.name}[/bold]: {r.description}  ->  {r.resolved_output_dir()}", highlight=False)
    try:
        res = run(r, recipe, until=until, start=start, dry_run=dry_run, overwrite=overwrite, console=con)
    except Exception as e:
        if hasattr(e, "resume_with"):  # a training stage stopped on a signal: `run` has no --resume, it resumes
            import shlex            # by itself; never repeat --from (it would redo the stage from scratch)
            again = ["instructkit", "run", str(recipe), *(overrides or []), *(["--until", until] if until else [])]
            raise e.resume_with(shlex.join(again)) from None
        raise
    if dry_run:
        return
    ran = [n for n, v in res.items() if v["status"] == "ran"]
    cached = [n for n, v in res.items() if v["status"] == "cached"]
    con.print(f"done: ran {', '.join(ran) or 'nothing'}; cached {', '.join(cached) or 'nothing'} "
              f"(run folder {r.resolved_output_dir()}, run.json)", highlight=False)
