"""``instructkit demo``: the FLAN held-out experiment, scaled down to the embedded model and this CPU.

data (built-in task suite, nli + coreference held out) -> train (LoRA on SmolLM2-135M-Instruct) ->
eval (zero-shot on held-out and seen clusters, base vs tuned) -> a before/after answer.
"""

from __future__ import annotations

from pathlib import Path

import typer


def demo(out: Path = typer.Option(Path("runs/demo"), "--out", help="Output folder."),
         model: str = typer.Option("smollm2-135m-instruct", "--model", help="Model to tune (alias, folder, hub id)."),
         per_task: int = typer.Option(16, "--per-task", help="Training examples per seen task (FLAN caps, scaled)."),
         epochs: float = typer.Option(1.0, "--epochs", help="Passes over the mixture."),
         limit: int = typer.Option(24, "--limit", help="Evaluation examples per task."),
         max_seen: int = typer.Option(4, "--max-seen", help="Seen tasks evaluated besides the held-out ones.")) -> None:
    """Instruction-tune the embedded default model on built-in tasks; report held-out gains and an answer."""
    from rich.console import Console

    from instructkit.config.base import validate
    from instructkit.config.recipe import Recipe
    from instructkit.data.tasks import builtin_tasks
    from instructkit.data.tasks.cli import run_mix
    from instructkit.eval.report import held_out_report
    from instructkit.train import train

    con = Console()
    out.mkdir(parents=True, exist_ok=True)
    tasks = [t.id for t in builtin_tasks()]
    recipe = validate(Recipe, {
        "name": "demo", "output_dir": str(out / "train"), "seed": 0,
        "description": "FLAN held-out experiment (demo scale)",
        "model": {"name_or_path": model, "chat_template": "plain"},
        "mix": {"tasks": tasks, "hold_out": ["nli", "coreference"], "cap": per_task, "rate_cap": per_task},
        "data": {"paths": [str(out / "mix" / "mixture.jsonl")], "max_length": 512},
        "train": {"method": "lora", "lr": 3e-4, "epochs": epochs, "micro_batch_size": 1, "grad_accum": 2,
                  "pack_tokens": 1024, "scheduler": "constant", "warmup_ratio": 0.0, "log_every": 2,
                  "tensorboard": False},
    }, "demo")
    con.rule("[bold]1/4 data: mix the built-in task suite, hold out nli + coreference")
    manifest = run_mix(recipe.mix, recipe.seed, str(out / "mix"))
    con.print(f"{sum(manifest['clusters'].values())} training examples; held out: "
              f"{', '.join(manifest['held_out']['tasks'])}")
    con.rule("[bold]2/4 train: LoRA on the mixture")
    res = train(recipe)
    con.rule("[bold]3/4 eval: zero-shot, base vs tuned, held-out and seen clusters")
    rep = held_out_report(model, str(res.model_dir), out / "mix" / "manifest.json", out / "report", limit=limit,
                          max_seen=max_seen)
    for c in rep["clusters"]:
        tag = "held-out" if c["held_out"] else "seen"
        con.print(f"  {c['cluster']:<14} {tag:<9} base {c['base']:.3f} -> tuned {c['tuned']:.3f}")
    con.rule("[bold]4/4 before / after on a held-out example")
    _before_after(con, model, str(res.model_dir), manifest["held_out"]["tasks"][0])
    con.print(f"\nreport: {out / 'report' / 'report.md'} (plot: clusters.png); run: {res.output_dir}")


def _before_after(con, base: str, tuned: str, task_id: str) -> None:
    from instructkit.data.tasks import load_task
    from instructkit.data.tasks.formats import render_examples
    from instructkit.eval.api import GenerateRequest
    from instructkit.eval.hf import HFModel

    task = load_task(task_id)
    ex = render_examples(task, task.eval_split, fmt="zero_shot", options=True, seed=1, limit=1)[0]
    con.print(f"[dim]{task_id} prompt:[/dim]\n{ex.prompt}\n[dim]target:[/dim] {ex.target}")
    for label, ref in (("before", base), ("after", tuned)):
        lm = HFModel(ref, progress=False)
        ans = lm.generate([GenerateRequest(prompt=ex.prompt + "\n", max_new_tokens=24, stop=["\n"])])[0].texts[0]
        con.print(f"[bold]{label}:[/bold] {ans.strip()}")
