"""The ``eval:`` config section. Owned by the evaluation stage."""

from __future__ import annotations

from pydantic import Field

from instructkit.config.base import Section


class EvalConfig(Section):
    tasks: list[str] = Field(default_factory=list, description="Evaluation tasks (ids or files).")
