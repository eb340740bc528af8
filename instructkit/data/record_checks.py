"""Record locations and string checks shared by every reader (:mod:`.files` for JSON/JSONL,
:mod:`.tabular` for CSV and Parquet)."""

from __future__ import annotations

import re
from typing import Any

from instructkit.errors import DataError

_SURROGATE = re.compile(r"[\ud800-\udfff]|\\u[dD][89a-fA-F]")


class RecordIndex(int):
    """A 0-based record index that prints as ``record N`` (so locations read ``file.json:record 3``)."""

    def __str__(self) -> str:
        return f"record {int(self)}"

    def __bool__(self) -> bool:  # record 0 is a location, not "no location"
        return True


def _find_surrogate(obj: Any, path: str = "", depth: int = 0) -> str | None:
    """The field path of the first string holding a lone surrogate, or None."""
    if depth > 200:
        return None
    if isinstance(obj, str):
        return path or "(value)" if _SURROGATE.search(obj) else None
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    for k, v in items:
        sub = (f"{path}.{k}" if isinstance(k, str) else f"{path}[{k}]").lstrip(".")
        found = _find_surrogate(v, sub, depth + 1)
        if found:
            return found
    return None


def _checked(where: int, rec: Any, path: str, raw_text: str, bad_bytes: bool) -> Any:
    """``rec``, or a located DataError when one of its strings holds a lone surrogate."""
    if _SURROGATE.search(raw_text):
        fld = _find_surrogate(rec)
        if fld:
            if bad_bytes:
                return DataError("bytes that are not valid UTF-8", path=path, line=where, field=fld,
                                 reason="invalid_encoding")
            return DataError("a lone surrogate (e.g. \\ud800) that no tokenizer can encode", path=path,
                             line=where, field=fld, reason="invalid_unicode")
    return rec
