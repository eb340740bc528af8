"""``instructkit data mix`` (and other task-system commands). Owned by the task system."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, List, Optional

import typer


def _console() -> Any:
    from rich.console import Console
    return Console()


# run_mix is library code (the pipeline's mix stage and the demo call it); kept importable from here
from instructkit.data.tasks.build import run_mix  # noqa: E402,F401


def register(app: typer.Typer) -> None:
    """Add the task-system commands to the ``data`` group."""
    tasks_app = typer.Typer(no_args_is_help=True, help="The task system: list, render, check templates.")
    app.add_typer(tasks_app, name="tasks")

    @app.command(context_settings={"allow_extra_args": True})
    def mix(config: Optional[str] = typer.Option(None, "--config", help="Recipe YAML with a mix: section."),
            out: str = typer.Option(..., "--out", help="Output folder: mixture.jsonl, manifest.json, composition.png."),
            tokenizer: Optional[str] = typer.Option(None, "--tokenizer", help="Count tokens with this tokenizer."),
            overwrite: bool = typer.Option(False, "--overwrite", help="Write into --out even if it is a non-empty folder that is not a mixture."),
            overrides: Optional[List[str]] = typer.Argument(None, help="Dotted overrides, e.g. mix.cap=1000.")) -> None:
        """Mix tasks into one SFT data file (FLAN/T0): caps, weights, held-out clusters, manifest, plot."""
        from instructkit.config.base import load_config
        from instructkit.config.recipe import Recipe
        from instructkit.config.mix import MixConfig
        from instructkit.data.tasks.report import held_out_line

        from instructkit.outputs import claim_output_dir

        recipe = load_config(Recipe, config, overrides or [])
        claim_output_dir(out, "mix", overwrite=overwrite,  # a mixture of earlier versions (unmarked) is ours too
                         also_ours=lambda names: set(names) <= {"mixture.jsonl", "manifest.json", "composition.png"})
        m = recipe.mix or MixConfig(tasks=["builtin"])
        tok = None
        if tokenizer or m.tokenizer:
            from instructkit.models import load_tokenizer
            tok = load_tokenizer(tokenizer or m.tokenizer)
        con = _console()
        with con.status("mixing..."):
            man = run_mix(m, recipe.seed, out, tok)
        con.print(f"wrote {man['totals']['examples']} examples to {out}/mixture.jsonl "
                  f"(sha256 {man['content_hash'][:12]}), manifest.json, composition.png")
        con.print("clusters: " + ", ".join(f"{c}={n}" for c, n in man["clusters"].items()))
        skipped = {t: v["skipped"] for t, v in man["tasks"].items() if v.get("skipped")}
        if skipped:
            con.print(f"skipped records: {skipped}")
        con.print(held_out_line(man), highlight=False)

    @app.command()
    def contamination(train: str = typer.Option(..., "--train", help="Training mixture JSONL."),
                      eval: Optional[List[str]] = typer.Option(None, "--eval", help="Eval JSONL file or task id / task YAML (repeat); default: the held-out tasks of the manifest.json next to --train."),
                      n: int = typer.Option(13, "--n", help="n-gram length (whitespace tokens, lower-cased)."),
                      limit: Optional[int] = typer.Option(None, "--limit", help="Max eval examples per set.")) -> None:
        """Share of eval examples sharing any n-gram with the training mixture."""
        from instructkit.data.tasks.contamination import eval_texts, overlap, train_index
        from instructkit.jsonl import read_jsonl
        from instructkit.errors import ConfigError
        con = _console()
        if not eval:
            man = Path(train).parent / "manifest.json"
            if not man.is_file():
                raise ConfigError(f"no --eval given and no manifest at {man} to take held-out tasks from")
            eval = list(json.loads(man.read_text())["held_out"]["refs"].values())
            if not eval:
                raise ConfigError(f"{man}: held_out.tasks is empty; pass --eval")
        idx = train_index(read_jsonl(train), n)
        con.print(f"{train}: {len(idx)} distinct {n}-grams")
        for ref in eval:
            r = overlap(idx, eval_texts(ref, limit), n)
            con.print(f"{ref}: {r['contaminated']}/{r['examples']} eval examples overlap ({r['share']:.1%})")

    @tasks_app.command("list")
    def list_(refs: Optional[List[str]] = typer.Argument(None, help="Task ids/YAML/folders (default: built-in suite).")) -> None:
        """Tasks with cluster, metric, template counts, split sizes."""
        from rich.table import Table
        from instructkit.data.tasks import load_tasks
        tab = Table("task", "cluster", "metric", "templates", "inverted", "rationale", "ref")
        for t in load_tasks(refs or ["builtin"]):
            tab.add_row(t.id, t.cluster, t.metric, str(len(t.templates)), str(sum(x.inverted for x in t.templates)),
                        "yes" if t.has_rationale else "", t.ref)
        _console().print(tab)

    @tasks_app.command("render")
    def render(task: str = typer.Argument(..., help="Task id or YAML."),
               split: str = typer.Option("validation", help="Split."),
               fmt: str = typer.Option("zero_shot", "--fmt", help="zero_shot, few_shot, zero_shot_cot, few_shot_cot."),
               n: int = typer.Option(3, "--n", help="Rows to show."),
               options: bool = typer.Option(True, help="List OPTIONS for classification."),
               k: int = typer.Option(3, "--k", help="Few-shot exemplars.")) -> None:
        """Show rendered examples of a task."""
        from instructkit.data.tasks import load_task
        from instructkit.data.tasks.formats import render_examples
        con = _console()
        for e in render_examples(load_task(task), split, fmt, k=k, options=options, limit=n, templates="one"):
            con.rule(f"{e.template_id} [{e.fmt}]")
            con.print(e.prompt, highlight=False, markup=False)
            con.print(f"=> {e.target}" + (f"   choices={e.answer_choices}" if e.answer_choices else ""),
                      highlight=False, markup=False)

    @tasks_app.command("promptsource-check")
    def promptsource_check(root: str = typer.Argument(..., help="promptsource templates folder.")) -> None:
        """Parse every templates.yaml and render each template on a synthetic row."""
        from instructkit.data.tasks.promptsource import check_tree
        _console().print(str(check_tree(root)), highlight=False)
