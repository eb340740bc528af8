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


def train_cmd(config: Path = typer.Option(..., "--config", "-c", help="Recipe YAML."),
              overrides: Optional[List[str]] = typer.Argument(None, help="Dotted overrides, e.g. train.lr=1e-4."),
              resume: bool = typer.Option(False, "--resume", help="Continue from the latest checkpoint of the run "
                                                                 "(same as train.resume=auto).")) -> None:
    from instructkit.config.base import load_config
    from instructkit.config.recipe import Recipe
    from instructkit.train.api import train

    recipe = load_config(Recipe, config, overrides or [])
    if resume and not recipe.train.resume:
        recipe.train.resume = "auto"
    res = train(recipe)
    if int(os.environ.get("RANK", "0")) == 0:
        typer.echo(f"final loss {res.final_loss}  ->  {res.output_dir}")


def export_cmd(adapter: Path = typer.Option(..., "--adapter", help="Adapter folder (RUN/model, RUN/best or "
                                                                    "RUN/checkpoint-N)."),
               out: Path = typer.Option(..., "--out", help="Output folder for the merged HF model."),
               base: Optional[str] = typer.Option(None, "--base", help="Base model (default: the one recorded "
                                                                      "in adapter_config.json)."),
               dtype: str = typer.Option("float32", "--dtype", help="Dtype of the merged weights.")) -> None:
    """Merge a LoRA/DoRA/QLoRA adapter into its base model and save a plain Hugging Face folder."""
    from instructkit.train.export import export_merged

    typer.echo(str(export_merged(adapter, out, base=base, dtype=dtype)))


def register(app: typer.Typer) -> None:
    app.command("train", help=TRAIN_HELP)(train_cmd)
    app.command("export", help="Merge a LoRA adapter into its base model and save an HF folder.")(export_cmd)
