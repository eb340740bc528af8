"""Where ``../shared/data`` (the real data sets beside a checkout) is found."""

from __future__ import annotations

import os
from pathlib import Path


def shared_data_dir() -> Path:
    """``$INSTRUCTKIT_SHARED``, else ``../shared/data`` beside the working directory or the checkout."""
    if os.environ.get("INSTRUCTKIT_SHARED"):
        return Path(os.environ["INSTRUCTKIT_SHARED"])
    for base in (Path.cwd().parent, Path(__file__).resolve().parents[3]):
        if (base / "shared" / "data").is_dir():
            return base / "shared" / "data"
    return Path.cwd().parent / "shared" / "data"
