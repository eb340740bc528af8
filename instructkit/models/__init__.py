"""Model and tokenizer loading: local HF folders, hub ids, GGUF files and built-in aliases."""

from instructkit.models.loading import (ALIASES, load_model, load_model_and_tokenizer,
                                        load_tokenizer, resolve_model)
from instructkit.models.paths import cache_dir
from instructkit.models.tiny import make_tiny_model, make_tiny_tokenizer

__all__ = ["ALIASES", "cache_dir", "load_model", "load_model_and_tokenizer", "load_tokenizer",
           "resolve_model", "make_tiny_model", "make_tiny_tokenizer"]
