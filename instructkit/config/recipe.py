"""A recipe: one YAML file with a section per pipeline stage (model, data, mix, train, eval).

Each stage defines its own section type next to its code; this module only composes them.
"""

from __future__ import annotations

from typing import Optional

from pydantic import Field

from instructkit.config.base import Section
from instructkit.data.config import DataConfig
from instructkit.data.tasks.config import MixConfig
from instructkit.eval.config import EvalConfig
from instructkit.models.config import ModelConfig
from instructkit.train.config import TrainConfig


class Recipe(Section):
    name: str = Field("run", description="Run name (used for the output folder).")
    description: str = Field("", description="What the recipe reproduces (paper, method).")
    seed: int = Field(0, description="Global seed: data order, sampling, init of new weights.")
    output_dir: str = Field("runs/{name}", description="Where results go; {name} is replaced by the run name.")
    model: ModelConfig = Field(default_factory=ModelConfig, description="The model to tune or evaluate.")
    data: DataConfig = Field(default_factory=DataConfig, description="SFT data files (conversation formats).")
    mix: Optional[MixConfig] = Field(None, description="Task mixture (FLAN/T0 task system); optional.")
    train: TrainConfig = Field(default_factory=TrainConfig, description="Training engine settings.")
    eval: EvalConfig = Field(default_factory=EvalConfig, description="Evaluation settings.")

    def resolved_output_dir(self) -> str:
        return self.output_dir.replace("{name}", self.name)
