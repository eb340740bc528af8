"""``instructkit eval judge`` / ``eval leaderboard``. Owned by the judge/ratings part."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the judge commands to the ``eval`` group."""
