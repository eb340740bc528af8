"""Shared-prefix reuse for log-likelihood: k-shot exemplars are computed once per task, not once per question.

In k-shot evaluation every question of a task (an MMLU subject, a BBH task) starts with the same
exemplars; they are most of the tokens. Requests are grouped by the longest token prefix their contexts
share; the prefix runs through the model once (its KV cache kept), and only the suffixes - the rest of
each context plus its continuations - are scored on top of that cache, in batches. The numbers are the
same as full forwards (tested to < 1e-4), the work is what lm-eval does minus the repeated prefixes.
"""

from __future__ import annotations

from typing import Any, Sequence


def lcp(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix of two token lists."""
    n = min(len(a), len(b))
    k = 0
    while k < n and a[k] == b[k]:
        k += 1
    return k


def prefix_groups(contexts: Sequence[Sequence[int]], min_len: int) -> list[tuple[int, list[int]]]:
    """``[(prefix_len, request indices)]`` covering every index once.

    Contexts are sorted so that those sharing a prefix are neighbours; a group grows while the prefix
    common to all its members stays >= ``min_len`` tokens. A group of one distinct context gets
    prefix_len 0 (its choices already share the context inside one packed row). Every member keeps at
    least one context token of its own after the prefix: the logit predicting the first continuation
    token sits at the context's last token, which must be in the scored suffix. All prefix-0 members
    come back as ONE group (last): zero-shot contexts share nothing, and scoring each alone would run
    batches of one row (5x slower on CPU).
    """
    order = sorted(range(len(contexts)), key=lambda i: tuple(contexts[i]))
    groups: list[tuple[int, list[int]]] = []
    cur: list[int] = []
    common = 0
    for i in order:
        if cur:
            k = min(common, lcp(contexts[cur[-1]], contexts[i]))
            if k >= min_len:
                cur.append(i)
                common = k
                continue
            groups.append(_close(cur, common, contexts))
        cur, common = [i], len(contexts[i])
    if cur:
        groups.append(_close(cur, common, contexts))
    alone = sorted(i for n, idxs in groups if not n for i in idxs)
    return [(n, idxs) for n, idxs in groups if n] + ([(0, alone)] if alone else [])


def prompt_pins(prompts: Sequence[Sequence[int]], min_len: int) -> list[Any]:
    """One :class:`~instructkit.lm.requests.Pin` per group of generation prompts sharing >= ``min_len`` leading
    tokens (each task's k-shot exemplars), ``None`` for a prompt that shares none: the engine prefills each
    group's prefix once, so prompts of several tasks submitted together still reuse their own exemplars.
    Every prompt keeps >= 1 token of its own (its last one gives the first logits)."""
    from instructkit.lm.requests import Pin

    pins: list[Any] = [None] * len(prompts)
    if len(prompts) < 2 or min_len <= 0:
        return pins
    for n, idxs in prefix_groups(prompts, min_len):
        if n >= min_len:
            pin = Pin(list(prompts[idxs[0]])[:n])
            for i in idxs:
                pins[i] = pin
    return pins


def _close(members: list[int], common: int, contexts: Sequence[Sequence[int]]) -> tuple[int, list[int]]:
    distinct = {tuple(contexts[i]) for i in members}
    if len(distinct) < 2:
        return 0, members
    return min(common, min(len(contexts[i]) for i in members) - 1), members


def prefix_cache(model: Any, prefix: Sequence[int], device: Any) -> Any:
    """The KV cache of ``prefix`` (one forward, batch 1)."""
    import torch

    from instructkit.lm.cache import output_cache

    with torch.no_grad():
        out = model(input_ids=torch.tensor([list(prefix)], device=device), use_cache=True)
    return output_cache(out)


def expand_cache(cache: Any, batch: int) -> Any:
    """A fresh cache holding the prefix once per row (views: the forward concatenates into new tensors,
    so the shared prefix is never copied up front nor modified)."""
    from transformers import DynamicCache

    out = DynamicCache()
    for i, layer in enumerate(cache.layers):
        out.update(layer.keys.expand(batch, -1, -1, -1), layer.values.expand(batch, -1, -1, -1), i)
    return out


def with_prefix(mask: Any, position_ids: Any, prefix_len: int) -> tuple[Any, Any]:
    """Extend a ``(B, 1, T, T)`` additive mask with ``prefix_len`` visible columns on the left and shift
    positions after the prefix."""
    import torch

    B, _, T, _ = mask.shape
    visible = torch.zeros((B, 1, T, prefix_len), dtype=mask.dtype)
    return torch.cat([visible, mask], dim=-1), position_ids + prefix_len
