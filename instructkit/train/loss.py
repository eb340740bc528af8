"""The model wrapper the loop trains: decoder -> LM head on trained positions only -> summed cross-entropy.

Why a wrapper module rather than ``model(labels=...)``:

* the loss must be a SUM over trained tokens (the loop divides by the token count of the whole
  optimizer step, across micro-batches and ranks); HF's built-in loss is a per-batch mean;
* labels are already shifted per example (see packing.py), HF would shift the packed row again;
* only trained positions go through the LM head (prompt tokens need no logits; the vocab is large),
  in chunks recomputed during backward so fp32 logits of a whole row are never held at once;
* DDP/FSDP hook the *wrapped* module's forward: putting the loss inside it keeps one forward call.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from instructkit.models.head import _identity, logit_postprocess  # noqa: F401  (re-exported)

IGNORE_INDEX = -100


def _head_ce(head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor,
             post: Callable[[torch.Tensor], torch.Tensor] = _identity,
             weights: torch.Tensor | None = None) -> torch.Tensor:
    logits = post(head(hidden).float())
    if weights is not None:  # per-token loss weights (Muppet's per-task scaling)
        return (F.cross_entropy(logits, targets, reduction="none") * weights).sum()
    return F.cross_entropy(logits, targets, reduction="sum")


def chunked_lm_loss(head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor, chunk: int,
                    post: Callable[[torch.Tensor], torch.Tensor] = _identity,
                    weights: torch.Tensor | None = None) -> torch.Tensor:
    """Sum of token cross-entropies of ``post(head(hidden))`` against ``targets`` (both already selected),
    each multiplied by ``weights`` when given."""
    n = hidden.shape[0]
    if chunk <= 0 or n <= chunk:
        return _head_ce(head, hidden, targets, post, weights)
    total = hidden.new_zeros((), dtype=torch.float32)
    for s in range(0, n, chunk):
        # checkpoint: keep only this chunk's inputs; logits are recomputed in backward
        total = total + checkpoint(_head_ce, head, hidden[s:s + chunk], targets[s:s + chunk], post,
                                   None if weights is None else weights[s:s + chunk], use_reentrant=False)
    return total


class CausalLMLoss(nn.Module):
    """``forward(batch) -> summed loss over tokens whose (shifted) label is not -100``."""

    def __init__(self, lm: nn.Module, loss_chunk_size: int = 0):
        super().__init__()
        self.lm = lm
        self.loss_chunk_size = loss_chunk_size
        self.post = logit_postprocess(lm)

    def forward(self, input_ids: torch.Tensor, labels: torch.Tensor, position_ids: torch.Tensor,
                attention_mask: torch.Tensor | None = None, loss_weights: torch.Tensor | None = None,
                **_: Any) -> torch.Tensor:
        decoder = self.lm.get_decoder()
        # use_cache=False is load-bearing: with a cache object transformers skips the packed-sequence
        # detection from position_ids and attends across example boundaries.
        out = decoder(input_ids=input_ids, position_ids=position_ids, attention_mask=attention_mask,
                      use_cache=False)
        hidden = out.last_hidden_state
        keep = labels != IGNORE_INDEX
        return chunked_lm_loss(self.lm.get_output_embeddings(), hidden[keep], labels[keep], self.loss_chunk_size,
                               self.post, None if loss_weights is None else loss_weights[keep])


def token_logprobs(lm: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Log-prob of each (shifted) label under ``lm`` for a collated batch; 0 where the label is -100."""
    kw = {k: batch[k] for k in ("input_ids", "position_ids", "attention_mask") if k in batch}
    logits = lm(**kw, use_cache=False).logits.float()
    labels = batch["labels"]
    lp = torch.log_softmax(logits, -1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return torch.where(labels == IGNORE_INDEX, torch.zeros_like(lp), lp)
