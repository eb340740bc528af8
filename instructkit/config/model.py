"""The ``model:`` config section."""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import Field

from instructkit.config.base import Section


class ModelConfig(Section):
    name_or_path: str = Field("smollm2-135m-instruct",
                              description="Built-in alias, local HF folder, .gguf file, or hub id (org/name).")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        "float32", description="Weights/compute dtype. auto: on a GPU bf16 (compute capability >= 8, else fp16); on a CPU, a probe "
                               "times the training GEMMs (forward, input and weight gradients) at the model's layer "
                               "shapes and a 2048-token step (pack_tokens' default) in fp32 and bf16 and "
                               "picks bf16 only if it is >= 1.3x faster; the decision is cached per machine with the "
                               "load it was measured under, and re-measured when that load was high and the machine is "
                               "quieter now. float32 for "
                               "exact tests.")
    attn_implementation: Literal["sdpa", "eager", "flash_attention_2", "flash_attention_3"] = Field(
        "sdpa", description="Attention kernel. flash_attention_2 needs flash-attn on a CUDA GPU.")
    chat_template: Optional[str] = Field(
        None, description="Chat template: None = the tokenizer's own; or a shipped name "
                          "(chatml, llama3, vicuna, alpaca, plain), a .jinja file, or Jinja text.")
