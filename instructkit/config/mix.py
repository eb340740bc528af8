"""The ``mix:`` config section (task mixtures). Owned by the task system."""

from __future__ import annotations

from typing import Optional

from pydantic import Field

from instructkit.config.base import Section


class MixConfig(Section):
    tasks: list[str] = Field(default_factory=list, description="Task ids, task YAML files or folders; 'builtin' = the whole built-in suite.")
    hold_out: list[str] = Field(default_factory=list, description="Clusters (or task ids) removed from training, evaluated zero-shot.")
    t0_dirs: list[str] = Field(default_factory=list, description="Folders of prompt/completion JSONL files, one per promptsource template (T0 data).")
    cap: int = Field(30_000, ge=1, description="Max examples per task/data set (FLAN: 30k).")
    rate_cap: Optional[int] = Field(3_000, ge=1, description="Mixing-rate maximum: rates are proportional to min(size, rate_cap) (FLAN: 3k); None = no limit.")
    temperature: float = Field(1.0, gt=0, description="Temperature scaling of mixing rates (rate ~ size**(1/T)); 1 = examples-proportional.")
    weights: dict[str, float] = Field(default_factory=dict, description="Extra weight per task id or cluster (multiplies the rate).")
    total: Optional[int] = Field(None, ge=1, description="Mixture size; None = sum of min(size, rate_cap).")
    t0_rule: bool = Field(False, description="T0 rule: cap each data set at t0_cap / num_templates examples per template, all shuffled together.")
    t0_cap: int = Field(500_000, ge=1, description="T0's per-data-set budget divided among its templates.")
    formats: dict[str, float] = Field(default_factory=lambda: {"zero_shot": 1.0}, description="Format mixing weights: zero_shot, few_shot, zero_shot_cot, few_shot_cot (CoT only for tasks with rationales).")
    options_prob: float = Field(0.5, ge=0, le=1, description="Chance that a classification prompt lists its OPTIONS (FLAN).")
    few_shot_k: int = Field(3, ge=1, description="Exemplars per few-shot prompt.")
    seed: Optional[int] = Field(None, description="Mixture seed; None = the recipe's seed.")
    tokenizer: Optional[str] = Field(None, description="Count tokens with this tokenizer (model alias/folder); None = characters and words only.")
    promptsource_dir: Optional[str] = Field(None, description="promptsource template tree used to split T0 file names into data set and template.")
