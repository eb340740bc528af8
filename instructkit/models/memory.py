"""Giving memory back between models: one model resident at a time in a process that loads several.

A process that trains or scores several models in turn (the demo: six LoRA runs, then seven models scored)
keeps the previous ones alive longer than it looks: accelerate's ``prepare`` binds an autocast wrapper of
``forward`` onto the model (a reference cycle), PEFT wrappers and the eval cache point back and forth, so
``del`` frees nothing until Python's cyclic collector runs its oldest generation, which a process holding
millions of long-lived objects (torch, transformers) does rarely. And glibc keeps freed heap pages of the
main arena mapped (RSS) unless asked to trim them. :func:`release` does both, at the points where a model
has just gone out of use.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=1)
def _libc() -> Any:
    name = ctypes.util.find_library("c")
    try:
        lib = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return lib if lib is not None and hasattr(lib, "malloc_trim") else None  # glibc only (not musl, macOS)


def release() -> None:
    """Collect unreachable objects (cycles included), then return free heap pages to the OS (glibc)."""
    gc.collect()
    lib = _libc()
    if lib is not None:
        lib.malloc_trim(0)
