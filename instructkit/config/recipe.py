"""A recipe: the unit a user runs. One YAML file with a section per pipeline stage (model, data, mix,
train, eval) and, optionally, the ``stages:`` that chain them (see :mod:`instructkit.pipeline`).

It lives at the top of the package because it composes every stage's own section type (each defined
next to its code); the stages themselves never import it, they receive it.
"""

from __future__ import annotations

from typing import Any, Optional

from pydantic import Field, field_validator

from instructkit.config.base import Section
from instructkit.config.data import DataConfig
from instructkit.config.mix import MixConfig
from instructkit.config.eval import EvalConfig
from instructkit.config.model import ModelConfig
from instructkit.config.train import TrainConfig

STAGE_NAME = r"^[a-z][a-z0-9_]*$"


class StageEntry(Section):
    kind: Optional[str] = Field(None, description="Registered stage kind (instructkit.pipeline.registry.STAGES); "
                                                  "default: the stage's name.")
    inputs: dict[str, str] = Field(default_factory=dict, description="Local name -> 'STAGE.OUTPUT' (one output of "
                                                                     "another stage) or 'STAGE' (all its outputs).")
    config: dict[str, Any] = Field(default_factory=dict, description="Overlay on the recipe's sections (e.g. "
                                                                     "{train: {lr: 1e-4}}), or the kind's own "
                                                                     "config when it has one.")
    description: str = Field("", description="What this stage does in the method (shown by --dry-run).")


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
    stages: dict[str, StageEntry] = Field(
        default_factory=dict, description="The pipeline, in order: stage name -> {kind, inputs, config}. Empty: "
                                          "mix (if a mix section) -> train -> eval (if eval.tasks) -> report.")

    @field_validator("stages")
    @classmethod
    def _names(cls, v: dict[str, StageEntry]) -> dict[str, StageEntry]:
        import re
        bad = [k for k in v if not re.match(STAGE_NAME, k)]
        if bad:
            raise ValueError(f"stage names must match {STAGE_NAME} (they are used in references): {bad}")
        return v

    def resolved_output_dir(self) -> str:
        return self.output_dir.replace("{name}", self.name)
