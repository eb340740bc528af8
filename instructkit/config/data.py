"""The ``data:`` config section (SFT data files). Owned by the data stage."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field

from instructkit.config.base import Section


class DataConfig(Section):
    paths: list[str] = Field(default_factory=list, description="Data files (JSON/JSONL) or folders of them.")
    format: Literal["auto", "alpaca", "sharegpt", "openai", "prompt_completion"] = Field(
        "auto", description="Record format; auto-detects per file from the first record.")
    on_error: Literal["raise", "skip"] = Field(
        "raise", description="raise: stop at the first bad record; skip: count and report every skipped record.")
    max_length: int = Field(2048, ge=1, description="Token budget per example; longer ones follow `truncate` (reported).")
    truncate: Literal["right", "left_prompt", "drop"] = Field(
        "right", description="Examples longer than max_length: right = cut the end (an answer cut away entirely is "
                             "dropped, counted); left_prompt = cut the start, keep the answer; drop = drop them. "
                             "Every drop is counted and located.")
    repair_leading_assistant: bool = Field(
        True, description="ShareGPT: drop the assistant turn a split conversation starts with (as FastChat "
                          "does; counted as repaired_leading_assistant) instead of rejecting the record.")
    val_fraction: float = Field(0.0, ge=0.0, lt=1.0, description="Share of examples held out for validation.")
    limit: Optional[int] = Field(None, description="Use at most this many examples (debugging).")
    num_proc: int = Field(2, ge=1, description="Worker processes that tokenize in `data prepare` (forked; 1 = in-process).")
    cache_dir: Optional[str] = Field(
        None, description="Root of the prepared-dataset cache; default ~/.cache/instructkit/data "
                          "($INSTRUCTKIT_CACHE/data). One sub-folder per fingerprint.")
