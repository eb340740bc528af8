"""Checks that fail before the first step, with a message naming the config key."""

from __future__ import annotations

from typing import Any

from instructkit.errors import ConfigError


def template_overhead(tokenizer: Any, template: str | None) -> int:
    """Tokens of a one-turn conversation with one-character messages: the template's fixed cost."""
    from instructkit.chat import Conversation, Renderer

    return len(Renderer(tokenizer, template)(Conversation.from_pairs("x", "y")).input_ids)


def check_config(recipe: Any, tokenizer: Any) -> None:
    """Checks that need only the recipe and tokenizer: run before any data is read."""
    t, d = recipe.train, recipe.data
    problems = []
    if t.packing and t.pack_tokens < d.max_length:
        problems.append(f"train.pack_tokens={t.pack_tokens} is below data.max_length={d.max_length}: a packed row "
                        "must hold the longest example (raise pack_tokens or lower max_length)")
    overhead = template_overhead(tokenizer, recipe.model.chat_template)
    if d.max_length <= overhead:
        problems.append(f"data.max_length={d.max_length} leaves no room for content: the chat template alone "
                        f"takes {overhead} tokens for a one-turn conversation")
    if t.method in ("lora", "dora", "qlora") and not t.lora.target_modules:
        problems.append("train.lora.target_modules is empty")
    if problems:
        raise ConfigError("invalid training config:\n  " + "\n  ".join(problems))


def check_eval_data(eval_every: int, has_eval_data: bool) -> None:
    if eval_every and not has_eval_data:
        raise ConfigError(f"train.eval_every={eval_every} but there is no validation data "
                          "(set data.val_fraction > 0 or pass eval_examples)")
