"""One JSONL reader and one atomic writer for the whole package.

Two kinds of JSONL file are read here, with different rules:

* **input files** (data, tasks, prompts, documents, our own finished outputs): every non-blank line
  must be JSON; a bad line is a :class:`DataError` naming file and line, never skipped silently.
* **append-only logs** (request caches, judge verdicts, votes): a process killed mid-write leaves a
  torn last line. :func:`read_log` skips unreadable lines and counts them (that request is simply
  asked again), and ends a torn line so the next appended record is not glued onto it.

Writers: :func:`write_atomic` (text, JSON or JSONL) writes a temporary file beside the target, fsyncs
and renames it over the target, so a reader or a crash never sees half a file; :func:`append_jsonl`
appends whole lines and, by default, fsyncs them (a recorded vote or answer survives ``kill -9``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterable, Iterator

from instructkit.errors import DataError

PathLike = str | os.PathLike


def iter_jsonl(path: PathLike, *, objects: bool = False) -> Iterator[tuple[int, Any]]:
    """``(line number, record)`` for each non-blank line (1-based; a leading BOM is ignored).

    A missing file, bad JSON or (with ``objects``) a record that is not a JSON object raise
    :class:`DataError` naming the file and line.
    """
    p = Path(path)
    if not p.is_file():
        raise DataError("file not found", path=str(p), reason="missing_file")
    with p.open(encoding="utf-8-sig") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"invalid JSON: {e.msg}", path=str(p), line=n, reason="invalid_json") from None
            if objects and not isinstance(rec, dict):
                raise DataError("expected a JSON object", path=str(p), line=n, reason="wrong_type")
            yield n, rec


def read_jsonl(path: PathLike, *, objects: bool = False) -> list[Any]:
    """Every record of a JSONL input file (errors as :func:`iter_jsonl`)."""
    return [rec for _, rec in iter_jsonl(path, objects=objects)]


def read_log(path: PathLike, required: tuple[str, ...] = ()) -> tuple[list[dict[str, Any]], int]:
    """The readable records of an append-only log and how many lines were unreadable.

    A line that is not a JSON object with every key in ``required`` counts as unreadable (typically the
    torn last line of a killed writer). A torn last line is terminated in place, so appending goes on
    on a fresh line. A missing file is an empty log.
    """
    p = Path(path)
    if not p.is_file():
        return [], 0
    raw = p.read_bytes()
    out, bad = [], 0
    for line in raw.split(b"\n"):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if not isinstance(rec, dict) or any(k not in rec for k in required):
            bad += 1
            continue
        out.append(rec)
    if raw and not raw.endswith(b"\n"):
        with p.open("ab") as f:
            f.write(b"\n")
    return out, bad


def dumps(rec: Any) -> str:
    """One JSONL line (UTF-8 kept readable, no trailing newline)."""
    return json.dumps(rec, ensure_ascii=False)


def append_jsonl(path: PathLike, records: Iterable[Any], *, fsync: bool = True) -> None:
    """Append whole lines; with ``fsync`` they are on disk when this returns."""
    text = "".join(dumps(r) + "\n" for r in records)
    if not text:
        return
    with open(path, "a", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        if fsync:
            os.fsync(f.fileno())


def write_atomic(path: PathLike, content: str | bytes) -> Path:
    """Write ``content`` to ``path`` through a temporary file + fsync + rename (all or nothing)."""
    p = Path(path)
    tmp = p.with_name(f".tmp{os.getpid()}-{p.name}")
    data = content.encode("utf-8") if isinstance(content, str) else content
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    finally:
        if tmp.exists():
            tmp.unlink()
    return p


def write_json(path: PathLike, obj: Any, *, indent: int | None = 2) -> Path:
    """Atomically write one JSON document."""
    return write_atomic(path, json.dumps(obj, ensure_ascii=False, indent=indent) + "\n")


def write_jsonl(path: PathLike, records: Iterable[Any]) -> Path:
    """Atomically write a whole JSONL file."""
    return write_atomic(path, "".join(dumps(r) + "\n" for r in records))
