"""The ``mix:`` config section (task mixtures). Owned by the task system."""

from __future__ import annotations

from pydantic import Field

from instructkit.config.base import Section


class MixConfig(Section):
    tasks: list[str] = Field(default_factory=list, description="Task ids, task YAML files or folders.")
    hold_out: list[str] = Field(default_factory=list, description="Clusters removed from training, evaluated zero-shot.")
