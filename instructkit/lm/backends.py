"""One place that turns a model reference into a backend of the :mod:`instructkit.lm.api` interface."""

from __future__ import annotations

from typing import Any


def make_backend(ref: str, *, endpoint_model: str = "default", api_key_env: str = "OPENAI_API_KEY",
                 dtype: str = "float32", batch_size: int = 8) -> Any:
    """An :class:`~instructkit.lm.api.LM` for a model reference or an OpenAI-compatible URL."""
    if ref.startswith(("http://", "https://")):
        from instructkit.lm.openai_backend import OpenAIModel
        return OpenAIModel(ref, endpoint_model, api_key_env=api_key_env)
    from instructkit.lm.hf import HFModel
    return HFModel(ref, dtype=dtype, batch_size=batch_size)
