"""Preference objectives train with dropout off (TRL's ``disable_dropout=True``).

Why: the reference log-probs are computed once in eval mode (no dropout) while the policy runs in train
mode; with dropout on, ``log pi - log ref`` is a noisy, biased estimate even at step 0 (where the two
models are identical and every pair's loss must be exactly ``log 2``). The reward model is trained without
dropout for the same reason TRL's RewardTrainer does: its scores are compared across two forwards.

Dropout hides in three places: ``nn.Dropout`` modules (GPT-2, OPT, LoRA's ``lora_dropout``), float attributes
of attention modules read in ``forward`` (Llama/Mistral/Qwen pass ``self.attention_dropout`` to SDPA as
``dropout_p``), and the config those attributes come from (so a later rebuild or a saved model agrees).
TRL's helper only handles the first; all three are turned off here.
"""

from __future__ import annotations

from typing import Any


def _is_dropout_name(name: str) -> bool:
    name = name.lower()
    return "dropout" in name or name.endswith("pdrop")


def disable_dropout(model: Any) -> int:
    """Set every dropout probability of ``model`` to 0; returns how many settings were > 0."""
    from torch import nn

    changed = 0
    for module in model.modules():
        if isinstance(module, nn.modules.dropout._DropoutNd):
            changed += module.p > 0
            module.p = 0.0
            continue
        for name, value in list(vars(module).items()):
            if _is_dropout_name(name) and isinstance(value, float) and not isinstance(value, bool) and value > 0:
                setattr(module, name, 0.0)
                changed += 1
        cfg = getattr(module, "config", None)
        if cfg is not None and hasattr(cfg, "to_dict"):
            for name, value in cfg.to_dict().items():
                if _is_dropout_name(name) and isinstance(value, float) and value > 0:
                    setattr(cfg, name, 0.0)
                    changed += 1
    return changed
