"""``instructkit demo``: the FLAN held-out experiment, scaled down to the embedded model and this CPU.

A recipe run (``instructkit run`` on the stages of :func:`with_stages`, cached by fingerprint): data (built-in
task suite, nli + coreference held out) -> train (LoRA on SmolLM2-135M-Instruct, and
an oracle LoRA on the held-out tasks themselves) -> report (zero-shot base / tuned / oracle on >= 200
distinct examples per held-out task with 95% CIs, chance level, a verdict per cluster; seen clusters as
the sanity check; contamination check). The stages are the pipeline's mix / train / eval.held_out (the
library functions :mod:`instructkit.experiments.heldout` also uses); this module holds the demo's scale
(:func:`demo_recipe`, :func:`with_stages`) and prints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

HELD_OUT = ["nli", "coreference"]
# classification tasks first: the report's seen-cluster sanity check takes the first max_seen of them
SEEN_FIRST = ["sentiment_movie", "topic_news", "paraphrase_facts"]


def demo_recipe(out: Path, model: str, per_task: int, steps: int | None, method: str, lr: float) -> Any:
    """The demo's scale: every suite task (seen ones capped at ``per_task``), zero-shot prompts with or
    without an OPTIONS list, the training ``plain`` template, LoRA in ``dtype: auto`` (bf16 where this machine's
    bf16 GEMMs are measured faster - 2x on AVX512-BF16 CPUs - else fp32, where bf16 would be 8-70x slower)."""
    from instructkit.config.base import validate
    from instructkit.data.tasks import builtin_tasks
    from instructkit.config.recipe import Recipe

    tasks = SEEN_FIRST + [t.id for t in builtin_tasks() if t.id not in SEEN_FIRST]
    return validate(Recipe, {
        "name": "demo", "output_dir": str(out), "seed": 0,
        "description": "FLAN held-out experiment (demo scale)",
        "model": {"name_or_path": model, "chat_template": "plain", "dtype": "auto" if method != "full" else "float32"},
        "mix": {"tasks": tasks, "hold_out": HELD_OUT, "cap": per_task, "rate_cap": per_task, "options_prob": 0.5},
        "data": {"max_length": 512},
        "train": {"method": method, "lr": lr, "epochs": 1.0, "max_steps": steps, "micro_batch_size": 1,
                  "grad_accum": 1, "pack_tokens": 1024, "scheduler": "constant", "warmup_ratio": 0.0,
                  "log_every": 5, "tensorboard": False,
                  # the same losses (dropout masks replayed), activations of one layer instead of 30: a
                  # 1024-token step peaked at 3.5 GB RSS without it (docs/train.md, "Memory")
                  "gradient_checkpointing": True},
    }, "demo")


def demo(out: Path = typer.Option(Path("runs/demo"), "--out", help="Output folder."),
         model: str = typer.Option("smollm2-135m-instruct", "--model", help="Model to tune (alias, folder, hub id)."),
         per_task: int = typer.Option(24, "--per-task", help="Training examples per seen task (FLAN caps, scaled)."),
         oracle_per_task: int = typer.Option(24, "--oracle-per-task", help="Oracle training rows per held-out task."),
         oracle_epochs: float = typer.Option(1.0, "--oracle-epochs", help="Declared oracle epochs over its rows."),
         steps: Optional[int] = typer.Option(8, "--steps", help="Optimizer steps per tuned seed (None: one pass)."),
         seeds: int = typer.Option(3, "--seeds", help="Training seeds (mixture draw + LoRA init) for tuned and oracle."),
         method: str = typer.Option("lora", "--method", help="lora (bf16 base) or full (fp32)."),
         lr: float = typer.Option(2e-3, "--lr", help="Learning rate (LoRA at this scale 2e-3; full ~5e-5)."),
         limit: int = typer.Option(64, "--limit", help="Distinct evaluation examples per held-out task (stratified)."),
         max_seen: int = typer.Option(1, "--max-seen", help="Seen tasks evaluated as the sanity check.")) -> None:
    """Instruction-tune the embedded default model on built-in tasks; report held-out gains with controls."""
    import json
    import shlex
    import sys

    from rich.console import Console

    from instructkit.eval.cli import print_report
    from instructkit.pipeline.runner import run

    con = Console()
    cmd = "instructkit demo " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    recipe = with_stages(demo_recipe(out, model, per_task, steps, method, lr), oracle_per_task, limit, max_seen,
                         seeds=seeds, oracle_epochs=oracle_epochs)
    con.rule(f"[bold]FLAN held-out experiment: hold out nli + coreference, train on the other 10 clusters "
             f"({seeds} seeds)")
    con.print("base: SmolLM2-135M-Instruct (already instruction-tuned; shipped Q4_1-quantized, dequantized here) - "
              "a toy-scale run of the design, not a replication of FLAN (see README)", highlight=False)
    # the demo is a recipe run: stages are cached, so a rerun with other eval settings only re-evaluates
    res = run(recipe, console=con)
    rep = json.loads(Path(res["eval"]["outputs"]["report"]).read_text())
    con.rule("[bold]zero-shot accuracy per cluster, 95% CI (bootstrap over examples), controls, verdicts")
    print_report(con, rep)  # its "reproduce" line re-runs the evaluation of these trained models
    ran = [v for v in res.values() if v["status"] == "ran"]
    wall, cpu = sum(v["wall_s"] for v in ran), sum(v["cpu_s"] for v in ran)
    # 2 cores: an idle machine would take about cpu_s / 2 (torch keeps both busy); a loaded one takes longer
    con.print(f"\nwall {wall:.0f} s (CPU {cpu:.0f} s; on an idle 2-core machine ~{cpu / 2:.0f} s)"
              + (f"; cached: {', '.join(n for n, v in res.items() if v['status'] == 'cached')}"
                 if len(ran) < len(res) else ""))
    con.print(f"report: {res['eval']['outputs']['markdown']}; stages: {out / 'run.json'}; the whole experiment "
              f"again (cached stages are reused): {cmd}", markup=False)


def with_stages(recipe: Any, oracle_per_task: int, limit: int, max_seen: int, *, seeds: int = 3,
                oracle_epochs: float = 2.0) -> Any:
    """The demo as pipeline stages (see docs/recipes.md), per training seed s (suffix ``_s`` beyond 0):
    mix -> train (tuned); oracle_mix -> oracle (the same training on the held-out tasks' own training rows,
    a declared number of epochs); then one eval.held_out over every seed's models (the base and its
    calibration scored once) -> report. The seed sets the mixture draw (rows, templates, OPTIONS coin)
    and the LoRA init; the evaluated items are the same for every model."""
    from instructkit.config.base import validate
    from instructkit.data.tasks import builtin_tasks

    held = [t.id for t in builtin_tasks() if t.cluster in HELD_OUT]
    stages: dict[str, Any] = {}
    inputs: dict[str, str] = {"manifest": "mix.manifest"}
    for s in range(seeds):
        sfx = "" if s == 0 else f"_{s}"
        stages[f"mix{sfx}"] = {"kind": "mix", "config": {"seed": s},
                               "description": f"The mixture without the held-out clusters (seed {s})."}
        stages[f"train{sfx}"] = {"kind": "train", "inputs": {"data": f"mix{sfx}.mixture"}, "config": {"seed": s},
                                 "description": f"The tuned model (seed {s})."}
        stages[f"oracle_mix{sfx}"] = {"kind": "mix", "config": {"seed": s, "mix": {
            "tasks": held, "hold_out": [], "cap": oracle_per_task, "rate_cap": oracle_per_task}}}
        stages[f"oracle{sfx}"] = {"kind": "train", "inputs": {"data": f"oracle_mix{sfx}.mixture"},
                                  "config": {"seed": s, "train": {"max_steps": None, "epochs": oracle_epochs}}}
        inputs[f"tuned{sfx}"] = f"train{sfx}.model"
        inputs[f"oracle{sfx}"] = f"oracle{sfx}.model"
    stages["eval"] = {"kind": "eval.held_out", "inputs": inputs,
                      "config": {"limit": limit, "templates": "one", "max_seen": max_seen, "dtype": "auto",
                                 "batch_size": 32, "preregistered": DEMO_DESIGN | {"n_per_task": limit, "seeds": seeds},
                                 "results_log": str(Path(recipe.output_dir) / "results_log.jsonl")}}
    stages["report"] = {"inputs": {"heldout": "eval"}}
    return validate(type(recipe), {**recipe.model_dump(), "stages": stages}, "demo")


#: the demo's design, fixed before it runs (copied into the report and its results log)
DEMO_DESIGN = {"design": "(a) FLAN cluster hold-out, demo scale", "held_out_clusters": HELD_OUT,
               "metrics": ["accuracy", "calibrated base", "balanced accuracy", "margin AUC", "twin consistency"],
               "verdict": "rules of instructkit.eval.verdict", "sampling": "stratified by gold class + contrast twins",
               "format": "OPTIONS share as trained (mix.options_prob)"}
