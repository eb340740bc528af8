"""``instructkit demo``: the main job on the embedded default model."""

from __future__ import annotations


def demo() -> None:
    raise NotImplementedError
