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
    options: Optional[float] = Field(None, ge=0.0, le=1.0, description="Share of evaluated items rendered with an "
                                     "OPTIONS list; null = the training mixture's options_prob (format parity).")
    twins: bool = Field(True, description="Score contrast twins of suite tasks that can flip their deciding slot.")
    calibrate_all: bool = Field(False, description="Calibrate every model, not only the base (costs a scoring pass each).")
    preregistered: dict = Field(default_factory=dict, description="The design fixed before running (design, clusters, "
                                "n, seeds, metrics, rules); copied into the report and the results log.")
    results_log: Optional[str] = Field(None, description="JSONL file every run appends its verdicts to (no best-of: "
                                       "docs quote it in full).")
