"""``instructkit train`` and ``instructkit export``. (Owned by the training stage.)"""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    pass
