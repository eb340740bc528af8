"""The ``eval:`` config section. Owned by the evaluation stage."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field

from instructkit.config.base import Section


class EvalConfig(Section):
    tasks: list[str] = Field(default_factory=list, description="Evaluation tasks: task ids, mmlu:FILE, bbh:NAME|FILE, gsm8k[:FILE].")
    model: Optional[str] = Field(None, description="Model to evaluate (default: the recipe's model.name_or_path).")
    fmt: Optional[Literal["zero_shot", "few_shot", "zero_shot_cot", "few_shot_cot"]] = Field(
        None, description="Prompt format (default per task: zero_shot; BBH and GSM8K few_shot_cot).")
    k: Optional[int] = Field(None, description="Few-shot exemplars (default: 5 MMLU, 8 GSM8K, 3 tasks; BBH uses its 3 CoT prompts).")
    self_consistency: int = Field(1, ge=1, description="CoT samples per question, answers majority-voted (1 = greedy).")
    temperature: float = Field(0.7, ge=0.0, description="Sampling temperature for self-consistency paths.")
    seed: int = Field(0, description="Seed for sampling and exemplar selection.")
    limit: Optional[int] = Field(None, ge=1, description="Evaluate N distinct examples per task, drawn with seed (every template of each).")
    templates: Literal["all", "one"] = Field("all", description="Task-system tasks: every template on each example (all) or one per example, spread evenly (one).")
    batch_size: int = Field(8, ge=1, description="Rows per forward pass (scoring).")
    gen_batch_size: Optional[int] = Field(
        None, ge=1, description="Sequences the engine decodes at once (generation: every task's requests share one "
                                "continuously refilled batch); default: the measured width (HFModel.GEN_BATCH_SIZE) "
                                "or batch_size if larger.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "float32", description="Model dtype for evaluation; auto = the fastest this machine has (the training "
                               "probe: bf16 where its GEMMs are fast, else fp32). Compare predictions against "
                               "float32 before trusting a bf16 number (bench/bench_eval.py counts differences).")
    max_length: Optional[int] = Field(None, description="Longest input in tokens (default: the model's context, at most 4096).")
    max_new_tokens: Optional[int] = Field(None, ge=1, description="Cap on generated tokens per answer (default per task: 256 CoT, 32-64 direct).")
    split: str = Field("validation", description="Split of task-system tasks to evaluate.")
    data_dir: Optional[str] = Field(None, description="Folder holding bbh/ and gsm8k/ (default: $INSTRUCTKIT_SHARED or ../shared/data).")
    out: Optional[str] = Field(None, description="Output folder for results.json, predictions.jsonl, throughput.json, cache.")
    apply_chat_template: bool = Field(False, description="Wrap plain prompts in the model's chat template for generation.")
    endpoint_model: str = Field("default", description="Model name sent when --model is an OpenAI-compatible URL.")
    api_key_env: str = Field("OPENAI_API_KEY", description="Environment variable holding the endpoint's API key.")
