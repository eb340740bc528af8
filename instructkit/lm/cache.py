"""The running batch's KV cache: one left-padded ``DynamicCache`` plus its 2D attention mask.

Rows join (``extend``) and leave (``select``) between decode steps. Keys/values at padded positions are
zeroed when a row joins: a left-padded prefill computes them from fully masked attention rows, and a NaN
there would survive the mask (0 * NaN = NaN in the attention matmul).

The running batch's layers are :class:`~instructkit.lm.grow.GrowLayer` s: decode steps, joining and leaving
rows change them in place instead of copying the whole cache (``grow.py``).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from instructkit.lm.grow import grow_layer_class


@lru_cache(maxsize=1)
def _cache_arg() -> str:
    # transformers renamed the forward's ``past_key_values`` to ``cache`` (and the output field with it);
    # the old name warns (FutureWarning) and goes away in 5.40. Older versions (>= 4.56, our floor) only
    # know ``past_key_values``.
    from transformers.modeling_outputs import CausalLMOutputWithPast
    return "cache" if "cache" in getattr(CausalLMOutputWithPast, "__dataclass_fields__", {}) else "past_key_values"


def cache_kwargs(cache: Any) -> dict[str, Any]:
    """The forward's keyword for a KV cache, under the installed transformers' name."""
    return {_cache_arg(): cache}


def output_cache(out: Any) -> Any:
    """The KV cache a forward returned (``out.cache``, or ``out.past_key_values`` before the rename)."""
    return getattr(out, _cache_arg())


def is_sliding(model: Any) -> bool:
    """Whether any attention layer of ``model`` uses a sliding window (it counts padding columns too)."""
    cfg = getattr(model, "config", None)
    types = getattr(cfg, "layer_types", None)
    if types:
        return any("sliding" in str(t) for t in types)
    return bool(getattr(cfg, "sliding_window", None)) and getattr(cfg, "use_sliding_window", True) is not False


def _pad_left(t: Any, n: int) -> Any:
    """Left-pad the sequence axis (dim -2 of a [B, H, L, D] cache tensor, dim -1 of a [B, L] mask)."""
    import torch.nn.functional as F
    if n == 0:
        return t
    return F.pad(t, (0, 0, n, 0)) if t.dim() == 4 else F.pad(t, (n, 0))


class BatchCache:
    def __init__(self, max_rows: int = 0) -> None:
        self.cache: Any = None   # transformers DynamicCache of the running rows (GrowLayers)
        self.mask: Any = None    # [B, L] long, 1 = real token
        self.max_rows = max_rows  # rows the buffers are allocated for (joins then need no copy)

    @staticmethod
    def new_dynamic(model: Any) -> Any:
        # Without a config every layer is a plain DynamicLayer (full attention cache), the only layer
        # type whose tensors can be concatenated and index-selected row by row.
        from transformers import DynamicCache
        return DynamicCache()

    @property
    def rows(self) -> int:
        return 0 if self.mask is None else int(self.mask.shape[0])

    def _layers(self, cache: Any) -> list[Any]:
        from transformers.cache_utils import DynamicLayer
        layers = list(cache.layers)
        if any(type(layer) not in (DynamicLayer, grow_layer_class()) for layer in layers):
            raise TypeError("the engine batches only plain DynamicLayer caches (full attention)")
        return layers

    def extend(self, cache: Any, mask: Any) -> None:
        """Append the rows of a freshly prefilled cache (``mask``: its [N, T] attention mask)."""
        import torch

        pad = (mask == 0)[:, None, :, None]
        for layer in self._layers(cache):
            layer.keys = layer.keys.masked_fill(pad, 0)
            layer.values = layer.values.masked_fill(pad, 0)
        if self.cache is None:
            cls = grow_layer_class()
            for i, layer in enumerate(self._layers(cache)):
                g = cls()
                g.add_rows(layer.keys, layer.values, self.max_rows)
                cache.layers[i] = g
            self.cache, self.mask = cache, mask
            return
        Lb, Ln = self.mask.shape[1], mask.shape[1]
        L = max(Lb, Ln)
        for old, new in zip(self._layers(self.cache), self._layers(cache)):
            old.add_rows(new.keys, new.values, self.max_rows)
        self.mask = torch.cat([_pad_left(self.mask, L - Lb), _pad_left(mask, L - Ln)], 0)

    def grow(self) -> Any:
        """The mask for the next decode step: every row gets one more real token."""
        import torch
        self.mask = torch.cat([self.mask, self.mask.new_ones((self.mask.shape[0], 1))], 1)
        return self.mask

    def rollback(self, length: int) -> None:
        """Undo a failed forward: keep the first ``length`` columns (a forward that raised half-way has
        appended its keys to some layers only)."""
        if self.cache is None:
            return
        for layer in self._layers(self.cache):
            layer.truncate(length)
        self.mask = self.mask[:, :length]

    def subset(self, rows: list[int]) -> tuple[Any, Any]:
        """A copy of rows ``rows``: (DynamicCache, mask) to try a forward on without touching the batch."""
        import torch
        from transformers import DynamicCache

        idx = torch.tensor(rows, device=self.mask.device)
        out = DynamicCache()
        for i, layer in enumerate(self._layers(self.cache)):
            out.update(layer.keys.index_select(0, idx), layer.values.index_select(0, idx), i)
        return out, self.mask.index_select(0, idx)

    def select(self, keep: list[int]) -> None:
        """Keep only rows ``keep`` (in that order); drop leading columns that are padding in every row."""
        import torch

        if not keep:
            self.cache, self.mask = None, None
            return
        if len(keep) == self.rows:
            return
        idx = torch.tensor(keep, device=self.mask.device)
        mask = self.mask.index_select(0, idx)
        first = int(mask.any(0).nonzero()[0]) if mask.shape[1] else 0
        for layer in self._layers(self.cache):
            if all(a < b for a, b in zip(keep, keep[1:])):  # the batch's case: rows move up in place
                layer.keep_rows(keep, first)
            else:
                layer.keys = layer.keys.index_select(0, idx)[:, :, first:]
                layer.values = layer.values.index_select(0, idx)[:, :, first:]
        self.mask = mask[:, first:]
