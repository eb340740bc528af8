"""``instructkit data mix`` (and other task-system commands). Owned by the task system."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the task-system commands to the ``data`` group."""
