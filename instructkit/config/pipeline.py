"""Config types of built-in stage kinds that have settings beyond the recipe's sections."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field

from instructkit.config.base import Section


class HeldOutConfig(Section):
    limit: Optional[int] = Field(200, ge=1, description="Distinct evaluation examples per task (seeded sample).")
    templates: Literal["all", "one"] = Field("one", description="Every template on each example, or one per "
                                                                "example rotated over all templates.")
    max_seen: Optional[int] = Field(4, ge=0, description="Seen (training) tasks evaluated as the sanity check.")
    held_out: list[str] = Field(default_factory=list, description="Extra held-out evaluation refs beside the "
                                                                  "manifest's held-out tasks (task ids / YAML).")
    contamination: bool = Field(True, description="Run the 13-gram contamination check against the mixture.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "float32", description="Evaluation dtype; auto = the fastest this machine has (measured probe).")
    batch_size: int = Field(16, ge=1, description="Rows per forward pass.")
