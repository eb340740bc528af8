"""Examples -> rows: per-example label shift, best-fit-decreasing packing, and the collators.

Why the label shift happens here, per example, and not in the loss: a causal LM predicts token
``t+1`` from position ``t``. Shifting the *packed row* would make the last token of example A
predict the first token of example B (cross-contamination through the loss). Shifting each example
on its own and setting its last label to -100 makes every example boundary a ``-100`` label, so the
packed row can be fed to the loss without any further shift.

Attention: packed rows carry ``position_ids`` that restart at 0 for every example and NO attention
mask. transformers (``masking_utils.find_packed_sequence_indices``) then derives a block-diagonal
causal mask from the position resets for sdpa/eager and varlen kernels for flash-attention. It only
does so when the forward gets no 2-D attention mask and no KV cache, hence ``use_cache=False``.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any, Sequence

import torch

from instructkit.errors import DataError

IGNORE_INDEX = -100


@dataclass
class Example:
    """One tokenized example with labels already shifted (``labels[t]`` is the target of position t)."""

    input_ids: list[int]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def n_trained(self) -> int:
        return sum(1 for x in self.labels if x != IGNORE_INDEX)


def shift_labels(labels: Sequence[int]) -> list[int]:
    """``[l0, l1, ..., ln-1] -> [l1, ..., ln-1, -100]``: the boundary label is always ignored."""
    return list(labels[1:]) + [IGNORE_INDEX]


def to_examples(records: Sequence[dict[str, Any]], max_length: int | None) -> tuple[list[Example], dict[str, int]]:
    """Shift labels, truncate to ``max_length`` and drop examples with nothing to learn, counting both."""
    out, stats = [], {"examples_in": len(records), "truncated": 0, "no_trained_tokens": 0}
    for n, r in enumerate(records):
        ids, labels = list(r["input_ids"]), list(r["labels"])
        if len(ids) != len(labels):
            raise DataError(f"example {n} has {len(ids)} input_ids but {len(labels)} labels", field="labels",
                            reason="length_mismatch")
        if max_length is not None and len(ids) > max_length:
            ids, labels = ids[:max_length], labels[:max_length]
            stats["truncated"] += 1
        ex = Example(ids, shift_labels(labels))
        if ex.n_trained == 0:
            stats["no_trained_tokens"] += 1
            continue
        out.append(ex)
    stats["examples_used"] = len(out)
    return out, stats


def best_fit_decreasing(lengths: Sequence[int], capacity: int) -> list[list[int]]:
    """Bins of example indices, each summing to <= ``capacity`` tokens (best fit, longest first).

    Open bins are kept sorted by remaining space, so the best fit is one bisect: O(n log n) compares.
    The result is deterministic for given lengths (ties broken by index).
    """
    order = sorted(range(len(lengths)), key=lambda i: (-lengths[i], i))
    bins: list[list[int]] = []
    free: list[tuple[int, int]] = []  # (remaining capacity, bin id), sorted
    for i in order:
        n = lengths[i]
        if n > capacity:
            raise ValueError(f"example {i} has {n} tokens, more than the row budget {capacity}")
        k = bisect.bisect_left(free, (n, -1))
        if k < len(free):
            rem, b = free.pop(k)
        else:
            rem, b = capacity, len(bins)
            bins.append([])
        bins[b].append(i)
        if rem - n > 0:
            bisect.insort(free, (rem - n, b))
    return bins


def make_rows(examples: Sequence[Example], packing: bool, pack_tokens: int) -> list[dict[str, torch.Tensor]]:
    """Rows as tensors, built once and reused every epoch (only their order changes)."""
    groups = best_fit_decreasing([len(e) for e in examples], pack_tokens) if packing else \
        [[i] for i in range(len(examples))]
    rows = []
    for g in groups:
        ids, labels, pos = [], [], []
        for i in g:
            e = examples[i]
            ids += e.input_ids
            labels += e.labels
            pos += range(len(e))
        rows.append({"input_ids": torch.tensor(ids), "labels": torch.tensor(labels),
                     "position_ids": torch.tensor(pos), "n_examples": torch.tensor(len(g))})
    return rows


def collate_packed(rows: Sequence[dict[str, torch.Tensor]], pad_id: int) -> dict[str, torch.Tensor]:
    """Stack packed rows; shorter rows are filled with a pad segment of its own (positions 0..k, labels -100).

    The pad segment is a separate 'example' for the packed-sequence mask, so real tokens never attend to it.
    """
    width = max(len(r["input_ids"]) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    pos = torch.arange(width).repeat(len(rows), 1)
    for b, r in enumerate(rows):
        n = len(r["input_ids"])
        ids[b, :n], labels[b, :n], pos[b, :n] = r["input_ids"], r["labels"], r["position_ids"]
        pos[b, n:] = torch.arange(width - n)
    return {"input_ids": ids, "labels": labels, "position_ids": pos,
            "num_tokens": torch.tensor(sum(len(r["input_ids"]) for r in rows))}


def collate_padded(rows: Sequence[dict[str, torch.Tensor]], pad_id: int) -> dict[str, torch.Tensor]:
    """Classic right padding with an attention mask (one example per row): the comparison baseline."""
    width = max(len(r["input_ids"]) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for b, r in enumerate(rows):
        n = len(r["input_ids"])
        ids[b, :n], labels[b, :n], mask[b, :n] = r["input_ids"], r["labels"], 1
    pos = torch.arange(width).repeat(len(rows), 1)
    return {"input_ids": ids, "labels": labels, "position_ids": pos, "attention_mask": mask,
            "num_tokens": mask.sum()}


COLLATORS = {True: collate_packed, False: collate_padded}
