"""The data stage: read SFT files into conversations, inspect them, prepare tokenized datasets.

Heavy modules (datasets, transformers) load lazily: ``from instructkit.data import prepare_dataset``
imports them only when that name is used.
"""

from instructkit.data.formats import FORMATS, SHAREGPT_ROLES
from instructkit.data.readers import SkipReport, detect_format, expand_paths, read_conversations

__all__ = ["FORMATS", "SHAREGPT_ROLES", "SkipReport", "detect_format", "expand_paths", "read_conversations",
           "prepare_dataset", "prepare_conversations", "PrepareReport"]


def __getattr__(name: str):
    if name in ("prepare_dataset", "prepare_conversations", "PrepareReport"):
        from instructkit.data import prepare
        return getattr(prepare, name)
    raise AttributeError(name)
