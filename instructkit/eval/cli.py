"""``instructkit eval``: ``instructkit eval --model REF --tasks a,b`` runs; ``eval report`` etc. are sub-commands.

Trailing dotted overrides (``eval.limit=8``) work as everywhere else: the group's argument parser
sets them aside before Click looks for a sub-command name.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Optional

import typer
from typer.core import TyperGroup

_OVERRIDE = re.compile(r"^[A-Za-z_][\w]*(\.[\w]+)+=")


class _EvalGroup(TyperGroup):
    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        overrides, rest, sub = [], [], False
        for a in args:
            sub = sub or a in self.commands
            (overrides if not sub and _OVERRIDE.match(a) else rest).append(a)
        ctx.meta["eval_overrides"] = overrides
        return super().parse_args(ctx, rest)


app = typer.Typer(cls=_EvalGroup, invoke_without_command=True, no_args_is_help=False,
                  context_settings={"help_option_names": ["-h", "--help"]})


def make_lm(ref: str, cfg: Any) -> Any:
    """An LM backend for a model reference or an OpenAI-compatible base URL."""
    if ref.startswith(("http://", "https://")):
        from instructkit.eval.openai_backend import OpenAIModel
        return OpenAIModel(ref, cfg.endpoint_model, api_key_env=cfg.api_key_env)
    from instructkit.eval.hf import HFModel
    return HFModel(ref, dtype=cfg.dtype, batch_size=cfg.batch_size, max_length=cfg.max_length,
                   apply_chat_template=cfg.apply_chat_template,
                   progress=False)  # the runner's per-task bar is the one shown


def load_sets(cfg: Any) -> list[Any]:
    from instructkit.eval.datasets import load_eval_set
    extra = {k: v for k, v in dict(k=cfg.k, split=cfg.split,
                                  data_dir=Path(cfg.data_dir) if cfg.data_dir else None).items() if v is not None}
    sets = [load_eval_set(t, cfg.fmt, cfg.limit, **extra) for t in cfg.tasks]
    if cfg.max_new_tokens:
        for es in sets:
            for it in es.items:
                it.max_new_tokens = cfg.max_new_tokens
    return sets


@app.callback()
def eval_main(
    ctx: typer.Context,
    model: Optional[str] = typer.Option(None, help="Model: alias, HF folder, .gguf, LoRA adapter folder, hub id, or http(s) URL of an OpenAI-compatible server."),
    tasks: Optional[str] = typer.Option(None, help="Comma-separated tasks: task ids, mmlu:FILE, bbh:NAME, gsm8k[:FILE]."),
    fmt: Optional[str] = typer.Option(None, "--fmt", help="zero_shot | few_shot | zero_shot_cot | few_shot_cot."),
    self_consistency: Optional[int] = typer.Option(None, "--self-consistency", help="K sampled CoT paths, majority vote."),
    limit: Optional[int] = typer.Option(None, help="First N items per task."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Batch size."),
    dtype: Optional[str] = typer.Option(None, help="float32 | bfloat16 | float16."),
    out: Optional[Path] = typer.Option(None, help="Output folder (rerun the same command to resume)."),
    config: Optional[Path] = typer.Option(None, "--config", help="Recipe YAML; its eval: section (+ model:) is used."),
) -> None:
    """Evaluate a model on tasks: rank classification, generation, CoT, self-consistency; resumable."""
    if ctx.invoked_subcommand is not None:
        return
    if model is None and tasks is None and config is None and not ctx.meta.get("eval_overrides"):
        typer.echo(ctx.get_help())
        raise typer.Exit()
    from rich.console import Console

    from instructkit.config.base import load_config
    from instructkit.config.recipe import Recipe
    from instructkit.errors import ConfigError
    from instructkit.eval.runner import evaluate
    from instructkit.eval.throughput import format_throughput

    recipe = load_config(Recipe, config, ctx.meta.get("eval_overrides", []))
    given = dict(model=model, tasks=tasks.split(",") if tasks else None, fmt=fmt, self_consistency=self_consistency,
                 limit=limit, batch_size=batch_size, dtype=dtype, out=str(out) if out else None)
    cfg = recipe.eval.model_copy(update={k: v for k, v in given.items() if v is not None})
    cfg = type(cfg).model_validate(cfg.model_dump())  # validate the CLI values too
    ref = cfg.model or (recipe.model.name_or_path if config else None)
    if not ref:
        raise ConfigError("no model: pass --model REF (or eval.model / model.name_or_path in --config)")
    if not cfg.tasks:
        raise ConfigError("no tasks: pass --tasks a,b,c (or eval.tasks in --config)")
    console = Console()
    sets = load_sets(cfg)
    for es in sets:
        if es.dropped:
            console.print(f"{es.name}: dropped {dict(es.dropped)}")
    lm = make_lm(ref, cfg)
    out_dir = Path(cfg.out) if cfg.out else Path("eval-out")
    res = evaluate(lm, sets, out_dir, self_consistency=cfg.self_consistency, temperature=cfg.temperature,
                   seed=cfg.seed, extra={"config": cfg.model_dump()})
    _print_results(console, res)
    console.print(f"throughput: {format_throughput(res['throughput'])}")
    console.print(f"wrote {out_dir}/results.json, predictions.jsonl, throughput.json")


def _print_results(console: Any, res: dict) -> None:
    from rich.table import Table
    t = Table("task", "format", "n", "metric", "value", "stderr")
    for name, r in res["tasks"].items():
        m = r["main_metric"]
        v = r["metrics"].get(m, {}) if m else {}
        t.add_row(name, r["format"], str(r["n"]), str(m), f"{v.get('value', float('nan')):.4f}",
                  f"{v.get('stderr', float('nan')):.4f}")
    console.print(t)


@app.command("report")
def report_cmd(
    base: str = typer.Option(..., help="The model before instruction tuning."),
    tuned: str = typer.Option(..., help="The instruction-tuned model."),
    manifest: Path = typer.Option(..., help="Mixture manifest JSON (held_out.tasks/clusters, train_tasks, tasks)."),
    out: Path = typer.Option(..., help="Output folder for report.json/.md/.html and the plot."),
    limit: Optional[int] = typer.Option(None, help="First N items per task."),
    batch_size: int = typer.Option(8, help="Batch size."),
    dtype: str = typer.Option("float32", help="Model dtype."),
    max_seen: Optional[int] = typer.Option(None, help="Evaluate at most this many seen (training) tasks."),
) -> None:
    """Held-out cluster report: base vs tuned, zero-shot, on held-out clusters and on seen tasks."""
    from rich.console import Console

    from instructkit.eval.report import held_out_report
    rep = held_out_report(base, tuned, manifest, out, limit=limit, batch_size=batch_size, dtype=dtype,
                          max_seen=max_seen)
    Console().print(f"wrote {out}/report.json, report.md, report.html, clusters.png "
                    f"({len(rep['tasks'])} tasks)")


def _register_judge() -> None:
    # the LLM judge and ratings (eval/judge*.py, eval/ratings.py) own their sub-commands
    from instructkit.eval.judge_cli import register
    register(app)


_register_judge()
