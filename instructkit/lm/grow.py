"""The running batch's KV cache layer: rows and columns change in place, not by copying the whole cache.

transformers' ``DynamicLayer`` concatenates every decode step's key/value column onto the cache (a copy of
the whole cache, per layer, per step), and the batch used to rebuild it with ``cat`` / ``index_select``
whenever a row joined or left, plus one more copy at the next step. On k-shot CoT prompts (BBH, GSM8K:
~1,000 tokens a row) that moved more memory than the weights. A :class:`GrowLayer` keeps each of its keys
and values in a :class:`Slab`: a buffer ``[R, H, C, D]`` of which rows ``[:r]`` and columns
``[c0:c0 + n]`` are the cache, so

* a decode step writes its column into spare columns (``HEADROOM`` of them; one copy per that many steps);
* a leaving row is filled by moving the rows below it up (in place, only rows after it), and leading
  columns that became padding in every row are dropped by moving ``c0``;
* a joining row is written into spare rows (the buffer is allocated for the engine's ``max_batch_size``
  rows; untouched pages cost no memory), right-aligned with zero padding on its left.

``keys``/``values`` are views of the buffers (what attention reads); assigning a tensor to them makes it the
buffer. The numbers are the same as with ``DynamicLayer``: only where they are stored changes.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Sequence

#: spare columns allocated when a slab must grow (one copy of the cache per this many decode steps)
HEADROOM = 64


class Slab:
    """Rows ``[:r]``, columns ``[c0:c0 + n]`` of ``buf`` (``[R, H, C, D]``)."""

    __slots__ = ("buf", "r", "c0", "n")

    def __init__(self, t: Any = None):
        self.set(t)

    def set(self, t: Any) -> None:
        ok = t is not None and t.dim() == 4
        self.buf = t if ok else None
        self.r, self.c0, self.n = (int(t.shape[0]), 0, int(t.shape[-2])) if ok else (0, 0, 0)

    def view(self) -> Any:
        return None if self.buf is None else self.buf[: self.r, :, self.c0: self.c0 + self.n]

    @staticmethod
    def _alloc(rows: int, cols: int, like: Any) -> Any:
        import torch
        return torch.empty((rows, like.shape[1], cols + HEADROOM, like.shape[-1]), dtype=like.dtype, device=like.device)

    def append(self, new: Any) -> None:
        """Columns ``new`` (``[r, H, t, D]``) after the last one."""
        import torch

        with torch.inference_mode():
            self._append(new)

    def _append(self, new: Any) -> None:
        t, b = new.shape[-2], self.buf
        if b is None or self.c0 + self.n + t > b.shape[-2] or b.shape[0] < new.shape[0] or b.dtype != new.dtype:
            grown = self._alloc(max(new.shape[0], b.shape[0] if b is not None else 0), self.n + t, new)
            if self.n:
                grown[: self.r, :, : self.n] = self.view()
            self.buf, self.c0 = grown, 0
        self.r = int(new.shape[0])
        self.buf[: self.r, :, self.c0 + self.n: self.c0 + self.n + t] = new
        self.n += t

    def keep_rows(self, keep: Sequence[int], first: int) -> None:
        """Rows ``keep`` (ascending) moved up in place; the first ``first`` columns dropped."""
        import torch

        lo, hi = self.c0 + first, self.c0 + self.n
        # the buffers are inference tensors (made in the engine's step): written in inference mode, also when
        # a caller abandons requests between steps
        with torch.inference_mode():
            for j, i in enumerate(keep):
                if i != j:
                    self.buf[j, :, lo:hi] = self.buf[i, :, lo:hi]
        self.r, self.c0, self.n = len(keep), lo, self.n - first

    def add_rows(self, new: Any, reserve: int = 0) -> None:
        """Rows ``new`` (``[b, H, Ln, D]``) below the others, all right-aligned at the longer length (zeros left)."""
        import torch

        with torch.inference_mode():
            self._add_rows(new, reserve)

    def _add_rows(self, new: Any, reserve: int) -> None:
        b, ln, n, r, buf = int(new.shape[0]), int(new.shape[-2]), self.n, self.r, self.buf
        if buf is not None and ln <= n and r + b <= buf.shape[0] and buf.dtype == new.dtype:
            lo = self.c0
            buf[r: r + b, :, lo + n - ln: lo + n] = new
            if ln < n:
                buf[r: r + b, :, lo: lo + n - ln] = 0
            self.r = r + b
            return
        L = max(n, ln)
        grown = self._alloc(max(r + b, reserve), L, new)
        if r:
            grown[:r, :, L - n: L] = self.view()
            grown[:r, :, : L - n] = 0
        grown[r: r + b, :, L - ln: L] = new
        grown[r: r + b, :, : L - ln] = 0
        self.buf, self.r, self.c0, self.n = grown, r + b, 0, L


@lru_cache(maxsize=1)
def grow_layer_class() -> Any:
    """:class:`GrowLayer`, a ``DynamicLayer`` subclass (built on first use: transformers is imported lazily)."""
    from transformers.cache_utils import DynamicLayer

    class GrowLayer(DynamicLayer):
        def __init__(self, **kwargs: Any):
            self._k, self._v = Slab(), Slab()
            super().__init__(**kwargs)

        keys = property(lambda self: self._k.view(), lambda self, t: self._k.set(t))  # type: ignore[assignment]
        values = property(lambda self: self._v.view(), lambda self, t: self._v.set(t))  # type: ignore[assignment]

        def update(self, key_states: Any, value_states: Any, *args: Any, **kwargs: Any) -> tuple[Any, Any]:
            if not self.is_initialized:
                self.device, self.is_initialized = key_states.device, True
            self._k.append(key_states)
            self._v.append(value_states)
            return self.keys, self.values

        def add_rows(self, keys: Any, values: Any, reserve: int = 0) -> None:
            self._k.add_rows(keys, reserve)
            self._v.add_rows(values, reserve)
            self.device, self.is_initialized = keys.device, True

        def keep_rows(self, keep: Sequence[int], first: int) -> None:
            self._k.keep_rows(keep, first)
            self._v.keep_rows(keep, first)

        def truncate(self, length: int) -> None:
            self._k.n, self._v.n = min(self._k.n, length), min(self._v.n, length)

    GrowLayer.__qualname__ = GrowLayer.__name__ = "GrowLayer"
    return GrowLayer
