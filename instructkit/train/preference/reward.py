"""Reward model: the LM with a scalar head, trained with the Bradley-Terry pairwise loss (the scorer that
ranks answers with a trained one is :class:`instructkit.lm.reward.RewardScorer`).

The head is transformers' ``*ForSequenceClassification`` (``num_labels=1``) so the saved folder loads
with ``AutoModelForSequenceClassification``; but the score is read by us, at each sequence's last trained
token (its end-of-turn token), because transformers locates "the last token" through the pad id, which
with pad == eos (SmolLM2) is the first end-of-turn, not the last.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from instructkit.train.preference.batches import last_token_index
from instructkit.train.preference.losses import bradley_terry
from instructkit.train.preference.objectives import PairMetrics


def to_reward_model(causal_lm: Any) -> Any:
    """A sequence-classification model (1 label) sharing the causal LM's body weights; new scalar head."""
    from transformers import AutoModelForSequenceClassification

    cfg = causal_lm.config.__class__.from_dict(causal_lm.config.to_dict())
    cfg.num_labels = 1
    cfg.pad_token_id = causal_lm.config.pad_token_id if causal_lm.config.pad_token_id is not None \
        else causal_lm.config.eos_token_id
    p = next(causal_lm.parameters())
    if p.is_meta:  # an FSDP rank >= 1 (cpu_ram_efficient_loading): shapes only, rank 0's weights come at prepare
        from accelerate import init_empty_weights
        with init_empty_weights(include_buffers=False):
            return AutoModelForSequenceClassification.from_config(cfg, dtype=p.dtype)
    rm = AutoModelForSequenceClassification.from_config(cfg)
    missing, unexpected = rm.base_model.load_state_dict(causal_lm.base_model.state_dict(), strict=False)
    if missing or unexpected:
        raise RuntimeError(f"reward model body does not fit the LM: {missing[:3]} {unexpected[:3]}")
    return rm.to(device=p.device, dtype=p.dtype)


def score_head(rm: nn.Module) -> nn.Module:
    return rm.score if hasattr(rm, "score") else rm.get_output_embeddings()


class RewardLoss(PairMetrics):
    KEYS = ("rewards_chosen", "rewards_rejected", "reward_margin", "reward_accuracy")

    def __init__(self, lm: nn.Module):
        super().__init__()
        if not hasattr(lm, "score"):
            from instructkit.errors import ConfigError
            raise ConfigError("train.objective=reward needs a model with a scalar head (method full; the "
                              "adapter methods do not train a new head yet)")
        self.lm = lm

    def rewards(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        hidden = self.lm.base_model(input_ids=batch["input_ids"], position_ids=batch["position_ids"],
                                    use_cache=False).last_hidden_state[0]
        return self.lm.score(hidden[last_token_index(batch)]).squeeze(-1).float()

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor, position_ids: torch.Tensor, seg: torch.Tensor,
                n_pairs: torch.Tensor, **_: Any) -> torch.Tensor:
        r = self.rewards({"input_ids": input_ids, "labels": labels, "position_ids": position_ids, "seg": seg,
                          "n_pairs": n_pairs})
        rc, rr = r[0::2], r[1::2]
        self._add({"rewards_chosen": rc, "rewards_rejected": rr, "reward_margin": rc - rr,
                   "reward_accuracy": (rc > rr).float()})
        return bradley_terry(rc, rr).sum()
