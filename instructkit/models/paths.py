"""Where instructkit keeps what it derives from models (converted checkpoints, probe decisions)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """Where converted models live (``$INSTRUCTKIT_CACHE`` or ``~/.cache/instructkit``)."""
    root = os.environ.get("INSTRUCTKIT_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "instructkit")
    return Path(root)
