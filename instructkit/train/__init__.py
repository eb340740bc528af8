"""The train stage: ``train(recipe, ...) -> TrainResult`` (see api.py) and ``instructkit train/export``.

Imports are lazy: the recipe loader imports ``instructkit.config.train`` and must not pull in torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["train", "TrainResult", "export_merged"]


def __getattr__(name: str) -> Any:
    if name in ("train", "TrainResult"):
        from instructkit.train import api
        return getattr(api, name)
    if name == "export_merged":
        from instructkit.train.export import export_merged
        return export_merged
    raise AttributeError(name)
