"""``instructkit train`` and ``instructkit export``. (Owned by the training stage.)"""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

import typer

TRAIN_HELP = """Supervised fine-tuning (full, LoRA, DoRA, QLoRA) of a causal LM on the recipe's data.

Multi-process: accelerate launch --config_file configs/accelerate/ddp.yaml -m instructkit train --config R.yaml

Outputs in the run folder: metrics.jsonl, tb/, loss.png, summary.json, checkpoint-N/, best/, model/.
See docs/train.md; all keys: instructkit config show --keys.
"""


RUN_FILES = ("metrics.jsonl", "summary.json", "loss.png", "recipe.yaml", "model", "best", "tb")


def prepare_run_dir(run_dir: Path, *, resume: bool, overwrite: bool) -> None:
    """The run folder rule (before anything loads): writable; not someone else's non-empty folder; an
    existing run is continued only with --resume and started over only with --overwrite. (--resume with no
    checkpoint starts fresh and says so: :func:`instructkit.train.checkpoint.resolve_resume`.)"""
    from instructkit.errors import InstructkitError
    from instructkit.outputs import claim_output_dir
    from instructkit.train.checkpoint import list_checkpoints

    ckpts = list_checkpoints(run_dir)
    done = [n for n in RUN_FILES if (run_dir / n).exists()] + [p.name for p in ckpts]
    if done and not resume and not overwrite:
        raise InstructkitError(f"{run_dir} already holds a training run ({', '.join(done[:4])}); pass --resume to "
                               "continue it, --overwrite to start over (its checkpoints are deleted), or choose "
                               "another output_dir")
    # an unmarked folder holding only a previous run's files (written before markers existed) is ours too
    claim_output_dir(run_dir, "train", overwrite=overwrite,
                     also_ours=lambda names: all(n in RUN_FILES or n.startswith(("checkpoint-", ".tmp-")) for n in names))
    if overwrite and not resume:
        import shutil
        for p in [run_dir / n for n in RUN_FILES] + ckpts:
            shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)


def remove_if_empty_run(run_dir: Path) -> None:
    """A run that failed before training (bad model, missing data) leaves no folder behind: the folder this
    command created is removed when it holds nothing but its marker and the recipe copy."""
    import shutil

    from instructkit.outputs import MARKER

    try:
        if run_dir.is_dir() and {p.name for p in run_dir.iterdir()} <= {MARKER, "recipe.yaml"}:
            shutil.rmtree(run_dir)
    except OSError:
        pass


def train_cmd(config: Path = typer.Option(..., "--config", "-c", help="Recipe YAML."),
              overrides: Optional[List[str]] = typer.Argument(None, help="Dotted overrides, e.g. train.lr=1e-4."),
              resume: bool = typer.Option(False, "--resume", help="Continue from the latest checkpoint of the run "
                                                                 "(same as train.resume=auto)."),
              overwrite: bool = typer.Option(False, "--overwrite", help="Start over in an existing run folder "
                                                                        "(deletes its checkpoints) or write into "
                                                                        "a non-empty folder.")) -> None:
    from instructkit.config.base import load_config
    from instructkit.config.recipe import Recipe
    from instructkit.train.api import train
    from instructkit.train.interrupt import TrainingInterrupted

    recipe = load_config(Recipe, config, overrides or [])
    if resume and not recipe.train.resume:
        recipe.train.resume = "auto"
    run_dir = Path(recipe.resolved_output_dir())
    main = int(os.environ.get("RANK", "0")) == 0
    fresh = not run_dir.exists()
    if main:
        prepare_run_dir(run_dir, resume=bool(recipe.train.resume), overwrite=overwrite)
    try:
        res = train(recipe)
    except TrainingInterrupted as e:  # name the exact command that resumes this run
        raise e.resume_with(" ".join(["instructkit train --config", str(config), *(overrides or []), "--resume"]))
    except BaseException:
        if main and fresh:
            remove_if_empty_run(run_dir)
        raise
    if int(os.environ.get("RANK", "0")) == 0:
        typer.echo(f"final loss {res.final_loss}  ->  {res.output_dir}")


def export_cmd(adapter: Path = typer.Option(..., "--adapter", help="Adapter folder (RUN/model, RUN/best or "
                                                                    "RUN/checkpoint-N)."),
               out: Path = typer.Option(..., "--out", help="Output folder for the merged HF model."),
               base: Optional[str] = typer.Option(None, "--base", help="Base model (default: the one recorded "
                                                                      "in adapter_config.json)."),
               dtype: str = typer.Option("float32", "--dtype", help="Dtype of the merged weights."),
               overwrite: bool = typer.Option(False, "--overwrite", help="Write into --out even when it is a "
                                              "non-empty folder that is not a previous export (only the files "
                                              "the export writes are replaced; nothing else is deleted)."),
               fmt: str = typer.Option("hf", "--format", help="hf: merged Hugging Face folder; gguf: a GGUF file "
                                                              "for llama.cpp/Ollama + Modelfile (--adapter may then "
                                                              "also be a full model folder, .gguf or alias)."),
               quant: str = typer.Option("f16", "--quant", help="gguf only: f16, q8_0 or f32."),
               template: Optional[str] = typer.Option(None, "--template", help="gguf only: chat template to store "
                                                                              "(default: the run's, else the "
                                                                              "tokenizer's).")
               ) -> None:
    """Merge a LoRA/DoRA/QLoRA adapter into its base model and save a plain Hugging Face folder, or write
    a GGUF file for llama.cpp / Ollama (--format gguf)."""
    if fmt == "gguf":
        from instructkit.models.gguf_export import export_gguf
        typer.echo(str(export_gguf(adapter, out, base=base, quant=quant, template=template, overwrite=overwrite)))
        return
    if fmt != "hf":
        from instructkit.errors import InstructkitError
        raise InstructkitError(f"--format {fmt!r}: choose hf or gguf")
    from instructkit.train.export import export_merged

    typer.echo(str(export_merged(adapter, out, base=base, dtype=dtype, overwrite=overwrite)))


def register(app: typer.Typer) -> None:
    app.command("train", help=TRAIN_HELP)(train_cmd)
    app.command("export", help="Merge a LoRA adapter into its base model and save an HF folder, or write "
                                 "GGUF for llama.cpp/Ollama (--format gguf).")(export_cmd)
