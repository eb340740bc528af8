"""Packed log-likelihood rows: requests sharing a context go into one row (the context once, then each
choice's tokens), with a 4D mask so each choice sees the context and its own earlier tokens only, and
position ids that restart at the context length per choice (see :mod:`instructkit.lm.hf`)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any


def pack_rows(encoded: list[tuple[list[int], list[int]]], max_length: int) -> list[tuple[list[int], list[tuple[int, list[int]]]]]:
    """Pack requests into rows ``(context, [(request index, continuation), ...])`` within max_length."""
    groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
    for i, (ctx, _cont) in enumerate(encoded):
        groups[tuple(ctx)].append(i)
    rows = []
    for ctx_t, idxs in groups.items():
        ctx = list(ctx_t)
        cur: list[tuple[int, list[int]]] = []
        used = len(ctx)
        for i in idxs:
            cont = encoded[i][1]
            if len(ctx) + len(cont) - 1 > max_length:
                # lm-eval: keep the last max_length+1 tokens (left-truncate the context); own row
                whole = (ctx + cont)[-(max_length + 1):]
                rows.append((whole[: len(whole) - len(cont)], [(i, cont)]))
                continue
            if cur and used + len(cont) - 1 > max_length:
                rows.append((ctx, cur))
                cur, used = [], len(ctx)
            cur.append((i, cont))
            used += len(cont) - 1
        if cur:
            rows.append((ctx, cur))
    return rows

def packed_batch(rows: list[tuple[list[int], list[tuple[int, list[int]]]]], pad: int, dtype: Any) -> tuple[Any, Any, Any, list]:
    """Token ids, additive 4D mask, position ids for a batch of packed rows, and where to score."""
    import torch

    seqs, spans = [], []
    for ctx, conts in rows:
        ids, pos, seg = list(ctx), list(range(len(ctx))), [0] * len(ctx)
        where = []
        for k, (i, cont) in enumerate(conts, start=1):
            start = len(ids)
            body = cont[:-1]  # the last continuation token is predicted, never fed
            ids += body
            pos += range(len(ctx), len(ctx) + len(body))
            seg += [k] * len(body)
            # logits predicting cont[j] sit at the context's last token (j=0), then at body[j-1]
            where.append((i, [len(ctx) - 1] + list(range(start, start + len(body))), cont))
        seqs.append((ids, pos, seg))
        spans.append(where)
    T = max(len(s[0]) for s in seqs)
    B = len(seqs)
    input_ids = torch.full((B, T), pad, dtype=torch.long)
    position_ids = torch.zeros((B, T), dtype=torch.long)
    allowed = torch.zeros((B, T, T), dtype=torch.bool)
    for b, (ids, pos, seg) in enumerate(seqs):
        n = len(ids)
        input_ids[b, :n] = torch.tensor(ids)
        position_ids[b, :n] = torch.tensor(pos)
        s = torch.tensor(seg)
        causal = torch.tril(torch.ones(n, n, dtype=torch.bool))
        # a token sees the context (segment 0) and earlier tokens of its own segment
        same = (s[:, None] == s[None, :]) | (s[None, :] == 0)
        allowed[b, :n, :n] = causal & same
        # padding queries see themselves only (an all-masked row would give NaN in SDPA)
        idx = torch.arange(n, T)
        allowed[b, idx, idx] = True
    mask = torch.zeros((B, 1, T, T), dtype=dtype)
    mask.masked_fill_(~allowed[:, None], torch.finfo(dtype).min)
    return input_ids, mask, position_ids, spans
