"""A trained reward model (``train.objective: reward``, saved as RUN/model) as a ranker of answers.

Used by ``synth preferences`` and by online RL, so it lives below the stages. The score is read at each
sequence's last trained token (its end-of-turn token), as in training (``train/preference/reward.py``):
transformers locates "the last token" through the pad id, which with pad == eos (SmolLM2) is the first
end-of-turn, not the last.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch


class RewardScorer:
    """``score(prompts, answers) -> rewards``: a trained reward model folder (RUN/model) as a ranker."""

    def __init__(self, path: str, template: str | None = None, max_length: int = 2048, device: str = "cpu"):
        from transformers import AutoModelForSequenceClassification

        from instructkit.chat import Renderer
        from instructkit.errors import ConfigError
        from instructkit.models import load_tokenizer

        self.tokenizer = load_tokenizer(path)
        self.model = AutoModelForSequenceClassification.from_pretrained(path).to(device).eval()
        if not hasattr(self.model, "score"):
            raise ConfigError(f"{path}: not a reward model (no scalar head); train one with train.objective=reward")
        self.renderer = Renderer(self.tokenizer, template, max_length)
        self.device = device

    @torch.no_grad()
    def score(self, prompts: Sequence[list[dict[str, Any]]], answers: Sequence[str]) -> list[float]:
        from instructkit.chat import Conversation

        out = []
        for msgs, ans in zip(prompts, answers):
            conv = Conversation.from_messages([{**m, "train": False} for m in msgs]
                                              + [{"role": "assistant", "content": ans}])
            ids, labels = self.renderer(conv)
            # the last trained label sits one position before the token it predicts: the end-of-turn token,
            # whose hidden state the head reads (labels are unshifted here, so it is that label's position)
            last = max(i for i, t in enumerate(labels) if t != -100)
            x = torch.tensor([ids[:last + 1]], device=self.device)
            hidden = self.model.base_model(input_ids=x, use_cache=False).last_hidden_state[0, -1]
            out.append(float(self.model.score(hidden).float()))
        return out
