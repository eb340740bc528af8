"""The ``instructkit`` command line: one sub-command group per pipeline stage.

Stage modules own their commands (``instructkit/<stage>/cli.py``) and import torch/transformers
inside the command bodies so that ``instructkit --help`` stays fast.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console

from instructkit import __version__
from instructkit.errors import InstructkitError

app = typer.Typer(no_args_is_help=True, rich_markup_mode="rich", pretty_exceptions_enable=False,
                  help="instructkit: instruction tuning of causal LMs, data -> synth -> train -> eval -> serve.\n\n"
                       "Every command that takes --config also takes dotted overrides as trailing "
                       "arguments, e.g. [bold]instructkit train --config r.yaml train.lr=1e-4[/bold].")


def _register() -> None:
    from instructkit.config.cli import app as config_app
    from instructkit.data.cli import app as data_app
    from instructkit.demo import demo
    from instructkit.eval.cli import app as eval_app
    from instructkit.train.cli import register as register_train

    app.add_typer(data_app, name="data", help="Read, inspect, prepare and mix training data.")
    register_train(app)
    app.add_typer(eval_app, name="eval", help="Evaluate models: tasks, benchmarks, LLM judge, reports.")
    app.add_typer(config_app, name="config", help="Show config keys and validate recipe files.")
    app.command("demo", help="Instruction-tune the embedded default model on built-in data; show before/after.")(demo)


@app.callback()
def _root(version: bool = typer.Option(False, "--version", help="Print the version and exit.")) -> None:
    if version:
        typer.echo(__version__)
        raise typer.Exit()


_register()


def main() -> None:
    try:
        app()
    except InstructkitError as e:
        Console(stderr=True).print(f"error: {e}", style="bold red", highlight=False, markup=False)
        sys.exit(2)


if __name__ == "__main__":
    main()
