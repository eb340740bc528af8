"""Moved: the composed recipe lives in :mod:`instructkit.recipe` (it imports every stage's section, so it
belongs above them, not in ``config/``). Re-exported here so existing imports keep working."""

from instructkit.recipe import Recipe, StageEntry

__all__ = ["Recipe", "StageEntry"]
