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
    from instructkit.synth.cli import app as synth_app
    app.add_typer(synth_app, name="synth", help="Synthesize data: self-instruct, evol-instruct, magpie, multi-turn, ShareGPT cleaning.")
    from instructkit.serve.chat_cli import chat as chat_cmd
    from instructkit.serve.cli import serve as serve_cmd
    app.command("serve", help="Serve a model (+ LoRA adapters) over the OpenAI API.")(serve_cmd)
    app.command("chat", help="Chat in the terminal with a model or a running server.")(chat_cmd)
    from instructkit.serve.ui.cli import arena as arena_cmd
    app.command("arena", help="Web arena: playground, anonymous battles with votes, leaderboard (+ the OpenAI API).")(arena_cmd)
    app.command("demo", help="FLAN held-out experiment on the embedded model: base / tuned / oracle, 95% CIs.")(demo)
    from instructkit.pipeline.cli import run_cmd
    app.command("run", help="Run a recipe's stages end to end; finished stages are cached by fingerprint.")(run_cmd)
    from instructkit.experiments.cli import app as experiment_app
    app.add_typer(experiment_app, name="experiment", help="Held-out experiments: FLAN clusters, T0 -> BIG-bench.")
    from instructkit.tools.cli import app as tools_app
    app.add_typer(tools_app, name="tools", help="Tools for the tool loop: retrieval index, a call by hand, GSM8K tool data.")


def _version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", is_eager=True, callback=_version,
                                       help="Print the version and exit.")) -> None:
    """(eager: ``instructkit --version`` needs no command)"""


_register()


def main() -> None:
    try:
        app()
    except InstructkitError as e:
        # soft_wrap: no newlines inserted into paths and commands a user copies
        Console(stderr=True).print(f"error: {e}", style="bold red", highlight=False, markup=False, soft_wrap=True)
        sys.exit(getattr(e, "exit_code", 2))
    except KeyboardInterrupt:  # a second Ctrl-C, or one outside the training loop: no traceback
        Console(stderr=True).print("interrupted", style="bold red", highlight=False, markup=False)
        sys.exit(130)


if __name__ == "__main__":
    main()
