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


def make_lm(ref: str, cfg: Any, chat_template: str | None = None) -> Any:
    """An LM backend for a model reference or an OpenAI-compatible base URL; ``chat_template``: the
    training template (the recipe's model.chat_template) used when eval.apply_chat_template is on."""
    if ref.startswith(("http://", "https://")):
        from instructkit.lm.openai_backend import OpenAIModel
        return OpenAIModel(ref, cfg.endpoint_model, api_key_env=cfg.api_key_env)
    from instructkit.lm.hf import HFModel
    return HFModel(ref, dtype=cfg.dtype, batch_size=cfg.batch_size, gen_batch_size=cfg.gen_batch_size,
                   max_length=cfg.max_length,
                   apply_chat_template=cfg.apply_chat_template, chat_template=chat_template,
                   progress=False)  # the runner's per-task bar is the one shown


def load_sets(cfg: Any) -> list[Any]:
    from instructkit.eval.sets import load_eval_set
    extra = {k: v for k, v in dict(k=cfg.k, split=cfg.split,
                                  data_dir=Path(cfg.data_dir) if cfg.data_dir else None).items() if v is not None}
    sets = [load_eval_set(t, cfg.fmt, cfg.limit, seed=cfg.seed, templates=cfg.templates, **extra) for t in cfg.tasks]
    if cfg.max_new_tokens:  # a cap: a direct answer's own 32-64 tokens are not raised to a CoT budget
        for es in sets:
            for it in es.items:
                it.max_new_tokens = min(it.max_new_tokens, cfg.max_new_tokens)
    return sets


def _keys_epilog() -> str:
    from rich.markup import escape

    from instructkit.config.base import help_text
    from instructkit.config.eval import EvalConfig
    # escaped: the key docs hold [type; default] brackets that rich would take for markup
    return escape("Dotted overrides (trailing arguments):\n\n" + help_text(EvalConfig, "eval.").replace("\n", "\n\n"))


@app.callback(epilog=_keys_epilog())
def eval_main(
    ctx: typer.Context,
    model: Optional[str] = typer.Option(None, help="Model: alias, HF folder, .gguf, LoRA adapter folder, hub id, or http(s) URL of an OpenAI-compatible server."),
    tasks: Optional[str] = typer.Option(None, help="Comma-separated tasks: task ids, mmlu:FILE, bbh:NAME, gsm8k[:FILE]."),
    fmt: Optional[str] = typer.Option(None, "--fmt", help="zero_shot | few_shot | zero_shot_cot | few_shot_cot."),
    self_consistency: Optional[int] = typer.Option(None, "--self-consistency", help="K sampled CoT paths, majority vote."),
    limit: Optional[int] = typer.Option(None, help="N distinct examples per task, drawn with eval.seed (all templates of each)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Batch size."),
    dtype: Optional[str] = typer.Option(None, help="auto | float32 | bfloat16 | float16 (auto: measured fastest)."),
    out: Optional[Path] = typer.Option(None, help="Output folder (rerun the same command to resume)."),
    config: Optional[Path] = typer.Option(None, "--config", help="Recipe YAML; its eval: section (+ model:) is used."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Folder holding bbh/ and gsm8k/ (default: $INSTRUCTKIT_SHARED or ../shared/data)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Write into --out even if it is a non-empty folder that is not an eval output."),
    tools: Optional[str] = typer.Option(None, "--tools", help="Generative tasks run through the tool loop with these tools (calculator, search, module:function); local models, template chatml_tools."),
) -> None:
    """Evaluate a model on tasks: rank classification, generation, CoT, self-consistency; resumable.

    Every eval.* key is also a trailing dotted override (e.g. eval.limit=8 eval.data_dir=DIR); the list:
    instructkit config show --keys (or see the keys below)."""
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
                 limit=limit, batch_size=batch_size, dtype=dtype, out=str(out) if out else None,
                 data_dir=str(data_dir) if data_dir else None)
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
    out_dir = Path(cfg.out) if cfg.out else Path("eval-out")
    from instructkit.outputs import claim_output_dir
    claim_output_dir(out_dir, "eval", overwrite=overwrite,  # before the model loads; a rerun resumes
                     also_ours=lambda names: set(names) <= {"results.json", "predictions.jsonl", "throughput.json",
                                                            "cache.jsonl"})
    lm = make_lm(ref, cfg, recipe.model.chat_template if config else None)
    if cfg.dtype == "auto" and hasattr(lm, "device"):  # say what the probe picked, and why (issue #15)
        from instructkit.models.dtype import resolve_dtype
        console.print(f"dtype auto -> {lm.dtype}: {resolve_dtype('auto', lm.device.type)[1]}")
    if tools:  # issue #13: the tool loop wraps the model (prompt -> user turn, final answer scored)
        from instructkit.toolset.loop import with_tools
        lm = with_tools(lm, tools)
    res = evaluate(lm, sets, out_dir, self_consistency=cfg.self_consistency, temperature=cfg.temperature,
                   seed=cfg.seed, extra={"config": cfg.model_dump()})
    _print_results(console, res)
    console.print(f"throughput: {format_throughput(res['throughput'])}")
    if tools:
        console.print(f"tool calls: {dict(lm.stats)}")
    console.print(f"wrote {out_dir}/results.json, predictions.jsonl, throughput.json")


def _print_results(console: Any, res: dict) -> None:
    """The task's primary metric with its 95% CI (bootstrap over examples), chance, and the
    length-normalised / class-balanced accuracies beside it (results.json holds every metric)."""
    from rich.table import Table
    t = Table("task", "format", "examples", "items", "metric", "value [95% CI]", "chance (best baseline)", "acc_norm",
              "balanced acc", "margin AUC", "calibrated: content-free / masked slot", "twins both right")

    def f(x: Any) -> str:
        return "" if x is None else f"{x:.4f}"
    notes = []
    for name, r in res["tasks"].items():
        m = r["main_metric"]
        v = r["metrics"].get(m, {}) if m else {}
        ci = v.get("ci") or [float("nan")] * 2
        norm = r["metrics"].get("acc_norm", {}).get("value")
        ctl = r.get("controls") or {}
        cal = " / ".join(f((ctl.get(k) or {}).get("value")) or "-" for k in ("calibrated_content_free",
                                                                           "calibrated_masked_slot"))
        tw = ctl.get("twin_consistency")
        t.add_row(name, r["format"], str(r.get("n_examples", r["n"])), str(r.get("n_items", r["n"])), str(m),
                  f"{v.get('value', float('nan')):.4f} [{ci[0]:.4f}, {ci[1]:.4f}]", f"{r.get('chance', 0.0):.3f}",
                  f(norm), f(ctl.get("balanced_acc")), f(ctl.get("margin_auc")), "" if cal == "- / -" else cal,
                  "" if not tw else f"{tw['value']:.3f} [{tw['ci'][0]:.3f}, {tw['ci'][1]:.3f}] ({tw['n_pairs']} pairs)")
        if r.get("unparsed"):
            notes.append(f"{name}: {r['unparsed']} generated answers could not be parsed (counted wrong)")
        bm = r.get("ll_boundary_merges")
        if bm and bm.get("merged"):
            notes.append(f"{name}: {bm['merged']} of {bm['requests']} scored requests merged a token across the "
                         "context/continuation boundary (BPE); split at the common prefix")
    console.print(t)
    for n in notes:
        console.print(n, highlight=False)


@app.command("report")
def report_cmd(
    base: str = typer.Option(..., help="The model before instruction tuning."),
    tuned: list[str] = typer.Option(..., help="The instruction-tuned model; repeat once per training seed."),
    manifest: Path = typer.Option(..., help="Mixture manifest JSON (held_out.tasks/refs/clusters, train_tasks, tasks)."),
    out: Path = typer.Option(..., help="Output folder for report.json/.md/.html and the plot."),
    oracle: Optional[list[str]] = typer.Option(None, help="A model tuned on the held-out cluster itself (the upper bound); repeat per seed."),
    options: float = typer.Option(0.0, "--options", help="Share of items rendered with an OPTIONS list (training's options_prob: format parity)."),
    limit: Optional[int] = typer.Option(None, help="N distinct examples per task, drawn with --seed."),
    templates: str = typer.Option("all", help="all: every template on each example; one: one per example, spread evenly."),
    seed: int = typer.Option(0, help="Seed for the example sample and the bootstrap."),
    chat_template: str = typer.Option("auto", "--chat-template", help="Training template for the eval context: auto (RUN/recipe.yaml next to --tuned), tokenizer (the model's own), a shipped name, a .jinja file, or none (raw text)."),
    held_out: Optional[list[str]] = typer.Option(None, "--held-out", help="Extra held-out eval tasks (task id/YAML, bbh:NAME, mmlu:FILE); repeat."),
    n_boot: int = typer.Option(1000, "--n-boot", help="Bootstrap resamples for the 95% CIs."),
    batch_size: int = typer.Option(8, help="Batch size."),
    dtype: str = typer.Option("float32", help="Model dtype."),
    max_seen: Optional[int] = typer.Option(None, help="Evaluate at most this many seen (training) tasks."),
) -> None:
    """Held-out cluster report: base vs tuned (vs oracle), zero-shot, 95% CIs, chance, verdict per cluster."""
    from rich.console import Console

    from instructkit.eval.report import held_out_report
    rep = held_out_report(base, list(tuned), manifest, out, oracle=list(oracle) if oracle else None, limit=limit,
                          templates=templates, seed=seed, chat_template=chat_template, held_out=held_out,
                          n_boot=n_boot, batch_size=batch_size, dtype=dtype, max_seen=max_seen, options=options)
    con = Console()
    print_report(con, rep)
    con.print(f"wrote {out}/report.json, report.md, report.html, clusters.png ({len(rep['tasks'])} tasks)")


def print_report(console: Any, rep: dict) -> None:
    """The cluster table (n examples, chance, each model with its 95% CI, paired delta) and the verdicts."""
    from rich.table import Table

    from instructkit.eval.report_render import cluster_table
    head, body = cluster_table(rep)
    t = Table(*head)
    for row in body:
        t.add_row(*row)
    # never squeeze the numbers into "0.5…": a narrow terminal (or a log file, width 80) wraps lines instead
    if console.width < 150:
        from rich.console import Console
        console = Console(width=150, file=console.file, force_terminal=console.is_terminal,
                          no_color=console.no_color)
    console.print(t)
    from instructkit.eval.report_render import controls_table, seed_lines
    head, body = controls_table(rep)
    if body:
        t = Table(*head, title="controls: chance = best answer-blind baseline on these items; calibrated base; "
                               "tuned / oracle mean ± SD over training seeds; base -> tuned (mean of seeds)")
        for row in body:
            t.add_row(*row)
        console.print(t)
        for line in seed_lines(rep):
            console.print(line, highlight=False, markup=False)
    for r in rep["tasks"]:  # what each model answers: a label flip must not read as "learnable"
        if r["held_out"] and any("pred_share" in d for d in r["details"].values()):
            console.print(f"  {r['task']} predicted shares: " + "; ".join(
                f"{m} " + ", ".join(f"{k} {v:.2f}" for k, v in d["pred_share"].items())
                for m, d in r["details"].items() if "pred_share" in d), highlight=False, markup=False)
    for c in rep["clusters"]:
        console.print(f"- {c['verdict']}", highlight=False, markup=False)
    console.print(f"reproduce: {rep['command']}", highlight=False, markup=False)


def _register_judge() -> None:
    # the LLM judge and ratings (eval/judge*.py, eval/ratings.py) own their sub-commands
    from instructkit.eval.judge_cli import register
    register(app)


_register_judge()
