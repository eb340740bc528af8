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
    task: str | None = None   # task id (Muppet: heterogeneous rows, per-task loss scale)
    weight: float = 1.0       # loss weight of each of its trained tokens (Muppet: 1/log(n_classes))

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
        ex = Example(ids, shift_labels(labels), r.get("task"), float(r.get("weight", 1.0)))
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
    return rows_from_groups(examples, groups)


#: per-token tensors a row may carry besides input_ids/labels/position_ids (Muppet); collators keep them
PER_TOKEN_EXTRAS = ("loss_weights", "task_ids")


def rows_from_groups(examples: Sequence[Example], groups: Sequence[Sequence[int]],
                     task_index: dict[str, int] | None = None) -> list[dict[str, torch.Tensor]]:
    """One row per group of example indices. Rows get ``loss_weights`` when any example's weight is not 1,
    and ``task_ids`` (per token) when ``task_index`` maps task names to ids."""
    weighted = any(e.weight != 1.0 for e in examples)
    rows = []
    for g in groups:
        ids, labels, pos, w, tid = [], [], [], [], []
        for i in g:
            e = examples[i]
            ids += e.input_ids
            labels += e.labels
            pos += range(len(e))
            if weighted:
                w += [e.weight] * len(e)
            if task_index is not None:
                tid += [task_index[e.task]] * len(e)
        row = {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels),
               "position_ids": torch.tensor(pos), "n_examples": torch.tensor(len(g))}
        if weighted:
            row["loss_weights"] = torch.tensor(w, dtype=torch.float32)
        if task_index is not None:
            row["task_ids"] = torch.tensor(tid)
        rows.append(row)
    return rows


def _extras(rows: Sequence[dict[str, torch.Tensor]], width: int | None) -> dict[str, torch.Tensor]:
    """Concatenate (width None) or right-pad to ``width`` the per-token extras present in the rows."""
    out = {}
    for k in PER_TOKEN_EXTRAS:
        if k in rows[0]:
            if width is None:
                out[k] = torch.cat([r[k] for r in rows]).unsqueeze(0)
            else:
                t = torch.zeros((len(rows), width), dtype=rows[0][k].dtype) - (k == "task_ids")
                for b, r in enumerate(rows):
                    t[b, :len(r[k])] = r[k]
                out[k] = t
    return out


def collate_packed(rows: Sequence[dict[str, torch.Tensor]], pad_id: int) -> dict[str, torch.Tensor]:
    """Concatenate the micro-batch's packed rows into ONE row of shape ``(1, total)``: no padding at all.

    Why one row: transformers derives packed-sequence attention from ``position_ids`` only when the batch
    holds a single row. flash-attention-2 with batch > 1 attends across the examples of a row (measured),
    and sdpa/eager need the whole batch free of a 2-D mask anyway. One flat row is correct for every
    attention kernel, and costs nothing: the row's examples are already separate segments.
    ``pad_id`` is unused (kept so packed and padded collators share a signature).
    """
    del pad_id
    return {"input_ids": torch.cat([r["input_ids"] for r in rows]).unsqueeze(0),
            "labels": torch.cat([r["labels"] for r in rows]).unsqueeze(0),
            "position_ids": torch.cat([r["position_ids"] for r in rows]).unsqueeze(0),
            "num_tokens": torch.tensor(sum(len(r["input_ids"]) for r in rows)), **_extras(rows, None)}


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
            "num_tokens": mask.sum(), **_extras(rows, width)}


COLLATORS = {True: collate_packed, False: collate_padded}
