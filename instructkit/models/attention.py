"""Packed-row attention for training: one causal SDPA call per packed example, no T x T mask.

A packed row holds several examples with restarting ``position_ids`` and no attention mask. Under
``sdpa`` transformers turns that into a (1, 1, T, T) block-diagonal boolean mask, and with a mask
SDPA cannot skip work: every query attends over the whole row (T^2 instead of the sum of the examples'
L^2), the causal kernel's skipping of the upper triangle is lost, and transformers copies K/V to every
query head (``repeat_kv``) where grouped-query SDPA reads them in place. ``sdpa_packed`` instead cuts the
row at the example boundaries (the same rule transformers uses: a position id that does not continue the
previous one) and runs ``scaled_dot_product_attention(is_causal=True, enable_gqa=True)`` per example.
Numbers are those of ``sdpa`` up to summation order (tests/unit/models/test_packed_attention.py);
docs/train.md "Speed" has the measured gain.

Whenever the plain causal-within-examples rule is not the whole story - a padding mask, a sliding or
chunked window, a KV cache (queries shorter than keys) - the mask is built exactly as for ``sdpa`` and
transformers' own ``sdpa`` function runs: only the mask-free case takes the per-example path.
"""

from __future__ import annotations

from typing import Any

NAME = "sdpa_packed"


def _mask(*, q_length: int, kv_length: int, attention_mask: Any = None, local_size: int | None = None,
          **kw: Any) -> Any:
    """No mask (None) when the per-example causal rule is all there is; else exactly sdpa's mask."""
    from transformers.masking_utils import sdpa_mask

    plain = (local_size is None and q_length == kv_length
             and (attention_mask is None or bool(attention_mask.all())))
    if plain and kw.get("q_offset", 0) == 0 and kw.get("kv_offset", 0) == 0:
        return None
    return sdpa_mask(q_length=q_length, kv_length=kv_length, attention_mask=attention_mask, local_size=local_size,
                     **kw)


def _bounds(pos: Any) -> list[int]:
    """Start indices of the examples in one row of position ids, plus the row's length."""
    import torch

    cut = torch.nonzero(pos[1:] != pos[:-1] + 1).flatten() + 1
    return [0, *cut.tolist(), int(pos.shape[0])]


def packed_sdpa_forward(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, dropout: float = 0.0,
                        scaling: float | None = None, is_causal: bool | None = None, **kwargs: Any) -> tuple[Any, None]:
    import torch
    import torch.nn.functional as F
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    pos = kwargs.get("position_ids")
    if (attention_mask is not None or pos is None or query.shape[2] != key.shape[2] or kwargs.get("softcap")
            or kwargs.get("sliding_window") or not getattr(module, "is_causal", True)
            or query.shape[-1] != value.shape[-1]):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    pos = pos.expand(query.shape[0], -1) if pos.shape[0] == 1 else pos
    gqa = query.shape[1] != key.shape[1]

    def attend(q: Any, k: Any, v: Any) -> Any:
        return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout, is_causal=True, scale=scaling,
                                              enable_gqa=gqa)

    rows = []
    for b in range(query.shape[0]):
        cuts = _bounds(pos[b])
        q, k, v = query[b:b + 1], key[b:b + 1], value[b:b + 1]
        if len(cuts) == 2:
            rows.append(attend(q, k, v))
        else:
            rows.append(torch.cat([attend(q[:, :, s:e], k[:, :, s:e], v[:, :, s:e])
                                   for s, e in zip(cuts, cuts[1:])], dim=2))
    out = rows[0] if len(rows) == 1 else torch.cat(rows, dim=0)
    return out.transpose(1, 2).contiguous(), None


def register() -> str:
    """Make ``sdpa_packed`` known to transformers (idempotent); returns its name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(NAME, packed_sdpa_forward)
    AttentionMaskInterface.register(NAME, _mask)
    return NAME


def use_packed_attention(model: Any) -> bool:
    """Switch a model loaded with ``sdpa`` to ``sdpa_packed`` (training on packed rows); True if switched."""
    cfg = getattr(model, "config", None)
    if cfg is None or getattr(cfg, "_attn_implementation", None) != "sdpa":
        return False
    register()
    model.set_attn_implementation(NAME)
    return True
