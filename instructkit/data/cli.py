"""``instructkit data``: inspect, prepare (data stage) and mix (task system)."""

from __future__ import annotations

import typer

app = typer.Typer(no_args_is_help=True)


def _register_tasks() -> None:
    # the task system (instructkit/data/tasks) owns `data mix` and friends
    from instructkit.data.tasks.cli import register
    register(app)


_register_tasks()
