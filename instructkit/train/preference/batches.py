"""Pairs -> packed rows -> per-sequence log-prob sums.

A pair's chosen and rejected sequences always go into the same row, one after the other, each with
``position_ids`` restarting at 0 (the engine's padding-free packing: transformers derives the
block-diagonal mask from the position resets, see ``train/packing.py``). With ``train.packing`` on,
several pairs share a row (best-fit decreasing on pair length); off, a row holds exactly one pair.

Every token carries a segment id: ``2k`` for the chosen and ``2k + 1`` for the rejected sequence of the
k-th pair of the micro-batch, ``-1`` where the (shifted) label is -100. Per-sequence sums are then one
``index_add_``. Labels come from the renderer (completion span), never from the pad id.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from instructkit.train.packing import IGNORE_INDEX, best_fit_decreasing, shift_labels


def pair_rows(pairs: Sequence[Any], packing: bool, pack_tokens: int) -> list[dict[str, torch.Tensor]]:
    """Rows of whole pairs (``RenderedPair``), labels shifted per sequence; ``pair_ids`` index ``pairs``."""
    lengths = [len(p.chosen_ids) + len(p.rejected_ids) for p in pairs]
    too_long = [i for i, n in enumerate(lengths) if n > pack_tokens]
    if too_long:
        from instructkit.errors import ConfigError
        raise ConfigError(f"train.pack_tokens={pack_tokens} is smaller than a pair (chosen + rejected = "
                          f"{lengths[too_long[0]]} tokens); set it to at least 2 * data.max_length")
    groups = best_fit_decreasing(lengths, pack_tokens) if packing else [[i] for i in range(len(pairs))]
    rows = []
    for g in groups:
        ids, labels, pos, seg = [], [], [], []
        for k, i in enumerate(g):
            p = pairs[i]
            for s, (x, y) in enumerate(((p.chosen_ids, p.chosen_labels), (p.rejected_ids, p.rejected_labels))):
                lab = shift_labels(y)
                ids += x
                labels += lab
                pos += range(len(x))
                seg += [2 * k + s if t != IGNORE_INDEX else -1 for t in lab]
        rows.append({"input_ids": torch.tensor(ids), "labels": torch.tensor(labels),
                     "position_ids": torch.tensor(pos), "seg": torch.tensor(seg),
                     "pair_ids": torch.tensor(g), "n_examples": torch.tensor(len(g))})
    return rows


def attach_reference(rows: list[dict[str, torch.Tensor]], ref: torch.Tensor | None) -> None:
    """Give each row the cached reference sums of its pairs (``[k, 2]``: chosen, rejected)."""
    for r in rows:
        r["ref"] = ref[r["pair_ids"]] if ref is not None else torch.zeros(len(r["pair_ids"]), 2)


def collate_pairs(rows: Sequence[dict[str, torch.Tensor]], pad_id: int = 0) -> dict[str, torch.Tensor]:
    """One flat row ``(1, total)`` for the whole micro-batch (no padding, one packed sequence set)."""
    del pad_id
    segs, offset = [], 0
    for r in rows:
        s = r["seg"].clone()
        s[s >= 0] += offset
        segs.append(s)
        offset += 2 * len(r["pair_ids"])
    cat = lambda k: torch.cat([r[k] for r in rows]).unsqueeze(0)  # noqa: E731
    out = {"input_ids": cat("input_ids"), "labels": cat("labels"), "position_ids": cat("position_ids"),
           "seg": torch.cat(segs).unsqueeze(0), "pair_ids": torch.cat([r["pair_ids"] for r in rows]),
           "n_pairs": torch.tensor(offset // 2), "num_tokens": torch.tensor(sum(len(r["input_ids"]) for r in rows))}
    if "ref" in rows[0]:  # DPO: the cached reference sums of these pairs, [n_pairs, 2]
        out["ref"] = torch.cat([r["ref"] for r in rows])
    return out


def count_pairs(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """The loss unit of preference objectives (the loop normalises by it instead of trained tokens)."""
    return batch["n_pairs"]


def _token_logprobs(head: nn.Module, hidden: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return -F.cross_entropy(head(hidden).float(), targets, reduction="none")


def sequence_logprobs(lm: nn.Module, batch: dict[str, torch.Tensor], chunk: int = 4096) -> tuple[torch.Tensor,
                                                                                               torch.Tensor]:
    """``(sums, counts)``, each ``[2 * n_pairs]`` (chosen, rejected interleaved): summed log-probs of the
    trained tokens of every sequence, and how many there are. Only trained positions reach the LM head,
    in chunks recomputed in backward (as the SFT loss does)."""
    out = lm.get_decoder()(input_ids=batch["input_ids"], position_ids=batch["position_ids"], use_cache=False)
    keep = batch["labels"] != IGNORE_INDEX
    hidden, targets, seg = out.last_hidden_state[keep], batch["labels"][keep], batch["seg"][keep]
    head = lm.get_output_embeddings()
    if chunk <= 0 or hidden.shape[0] <= chunk:
        lp = _token_logprobs(head, hidden, targets)
    else:
        lp = torch.cat([checkpoint(_token_logprobs, head, hidden[s:s + chunk], targets[s:s + chunk],
                                   use_reentrant=False) for s in range(0, hidden.shape[0], chunk)])
    n = 2 * int(batch["n_pairs"])
    sums = torch.zeros(n, dtype=lp.dtype, device=lp.device).index_add_(0, seg, lp)
    counts = torch.zeros(n, dtype=lp.dtype, device=lp.device).index_add_(0, seg, torch.ones_like(lp))
    return sums, counts


def last_token_index(batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Flat index (into the one row) of each sequence's last trained token: the reward model reads its
    score there, on the end-of-turn token (always trained by the renderer). Labels are shifted, so the
    last trained *label* sits one position before that token."""
    seg = batch["seg"][0]
    idx = torch.arange(seg.shape[0], device=seg.device)
    n = 2 * int(batch["n_pairs"])
    last = torch.full((n,), -1, dtype=torch.long, device=seg.device)
    m = seg >= 0
    return last.scatter_reduce(0, seg[m], idx[m], reduce="amax") + 1
