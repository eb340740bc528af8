"""The ``train:`` config section. Owned by the training stage."""

from __future__ import annotations

from pydantic import Field

from instructkit.config.base import Section


class TrainConfig(Section):
    lr: float = Field(2e-5, description="Peak learning rate.")
    epochs: float = Field(3.0, description="Passes over the data (Alpaca: 3).")
