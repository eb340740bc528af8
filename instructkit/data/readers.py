"""Read SFT data files into :class:`Conversation` objects, streaming, with located errors.

* ``path`` may be a file, a folder (every ``*.json``/``*.jsonl`` directly inside, sorted), a glob
  (``data/*.jsonl``), or a list of those.
* JSONL (``.jsonl``, or a ``.json`` file whose first line is a complete object) is read line by line by a
  generator: the file is never held in memory and reading the first record parses one line.
  ``meta["line"]`` is the 1-based line number. Blank lines are not records and are passed over.
* A JSON array file (``.json`` starting with ``[``) is parsed whole with :func:`json.load` (a JSON array
  cannot be streamed without a third-party incremental parser); its records are located by **record
  index** (0-based, ``data[i]``): ``meta["line"] = meta["index"] = i``.
* The format is detected per file from its first record (:func:`detect_format`), unless ``format=``
  names one (see :mod:`instructkit.data.formats`).
* ``on_error="raise"`` raises the first :class:`DataError` (``file:line: field 'x': message``);
  ``on_error="skip"`` counts every rejected record by reason in a :class:`SkipReport` and goes on.
"""

from __future__ import annotations

import glob as _glob
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Union

from instructkit.chat.conversation import Conversation
from instructkit.data.formats import FORMATS, convert, detect_record_format
from instructkit.errors import DataError, InstructkitError

PathLike = Union[str, Path]
SUFFIXES = (".json", ".jsonl")


@dataclass
class SkipReport:
    """Skipped records counted by reason, with the first few ``file:line field: message`` per reason."""

    max_examples: int = 3
    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def add(self, err: DataError) -> None:
        self.counts[err.reason] += 1
        ex = self.examples.setdefault(err.reason, [])
        if len(ex) < self.max_examples:
            ex.append(str(err))

    def merge(self, other: "SkipReport") -> None:
        for reason, n in other.counts.items():
            self.counts[reason] += n
            ex = self.examples.setdefault(reason, [])
            ex.extend(other.examples.get(reason, [])[: max(0, self.max_examples - len(ex))])

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def to_dict(self) -> dict[str, Any]:
        return {"counts": dict(self.counts), "examples": self.examples}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SkipReport":
        return cls(counts=Counter(d.get("counts", {})), examples=dict(d.get("examples", {})))

    def __rich__(self) -> Any:
        from rich.table import Table

        t = Table(title=f"skipped records: {self.total}", show_lines=False)
        t.add_column("reason")
        t.add_column("count", justify="right")
        t.add_column("first examples (file:line field: message)", overflow="fold")
        for reason, n in self.counts.most_common():
            t.add_row(reason, str(n), "\n".join(self.examples.get(reason, [])))
        return t

    def __str__(self) -> str:
        lines = [f"skipped records: {self.total}"]
        for reason, n in self.counts.most_common():
            lines.append(f"  {reason}: {n}")
            lines += [f"    {e}" for e in self.examples.get(reason, [])]
        return "\n".join(lines)


# -- paths --------------------------------------------------------------------------------------------
def expand_paths(paths: PathLike | Iterable[PathLike]) -> list[Path]:
    """Files named by ``paths`` (files, folders, globs), in a stable order; an error if one names nothing."""
    items = [paths] if isinstance(paths, (str, Path)) else list(paths)
    out: list[Path] = []
    for item in items:
        p = Path(item).expanduser()
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix in SUFFIXES)
            if not found:
                raise InstructkitError(f"{p}: folder holds no *.json or *.jsonl files")
        elif p.is_file():
            found = [p]
        elif any(c in str(item) for c in "*?["):
            found = sorted(Path(f) for f in _glob.glob(str(p), recursive=True) if Path(f).is_file())
            if not found:
                raise InstructkitError(f"{item}: the pattern matches no file")
        else:
            raise InstructkitError(f"{item}: no such file, folder or glob")
        out += found
    return out


# -- raw records ----------------------------------------------------------------------------------------
Raw = tuple[int, Any]  # (line or record index, parsed record or a DataError for invalid JSON)


def _is_jsonl(path: Path) -> bool:
    if path.suffix == ".jsonl":
        return True
    with path.open("rb") as f:
        head = f.read(1024).lstrip()
        if head.startswith(b"["):
            return False
        f.seek(0)
        first = f.readline()
    try:  # a .json file whose first line is a complete object is JSON Lines
        json.loads(first)
        return True
    except ValueError:
        return False


def _iter_jsonl(path: Path) -> Iterator[Raw]:
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield n, json.loads(line)
            except ValueError as e:
                yield n, DataError(f"invalid JSON: {e}", path=str(path), line=n, reason="invalid_json")


def _iter_json_array(path: Path) -> Iterator[Raw]:
    try:
        with path.open(encoding="utf-8") as f:
            data = json.load(f)
    except ValueError as e:
        # the whole file is unreadable: no record can be located or recovered, so this always raises
        raise DataError(f"invalid JSON (the whole array is unreadable): {e}", path=str(path),
                        line=getattr(e, "lineno", None), reason="invalid_json") from None
    if isinstance(data, dict):  # {"data": [...]} / {"examples": [...]}: one list-valued key
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise DataError("top level is an object, expected a list of records (or JSON Lines)",
                            path=str(path), reason="wrong_type")
        data = lists[0]
    if not isinstance(data, list):
        raise DataError(f"top level is a {type(data).__name__}, expected a list of records",
                        path=str(path), reason="wrong_type")
    yield from enumerate(data)


def iter_records(path: PathLike) -> Iterator[Raw]:
    """``(line, record)`` pairs of one file; invalid JSON lines come as ``(line, DataError)``."""
    p = Path(path)
    return _iter_jsonl(p) if _is_jsonl(p) else _iter_json_array(p)


def detect_format(path: PathLike) -> str:
    """The format of a file, from its first parseable record (folders/globs: their first file)."""
    p = expand_paths(path)[0]
    for n, rec in iter_records(p):
        if isinstance(rec, DataError):
            continue
        try:
            return detect_record_format(rec)
        except DataError as e:
            raise e.at(str(p), n) from None
    raise DataError("no records to detect the format from", path=str(p), reason="empty_conversation")


# -- conversations --------------------------------------------------------------------------------------
def _raise(err: DataError, report: SkipReport) -> None:
    raise err


def _skip(err: DataError, report: SkipReport) -> None:
    report.add(err)


ON_ERROR: dict[str, Callable[[DataError, SkipReport], None]] = {"raise": _raise, "skip": _skip}


def _check_choice(value: str, choices: Iterable[str], what: str) -> None:
    if value not in choices:
        raise InstructkitError(f"unknown {what} {value!r} (expected one of: {', '.join(choices)})")


def read_file(path: Path, fmt: str, handle: Callable[[DataError], None]) -> Iterator[Conversation]:
    src = str(path)
    for n, rec in iter_records(path):
        if isinstance(rec, DataError):
            handle(rec)
            continue
        try:
            if fmt == "auto":  # first parseable record decides for the whole file
                fmt = detect_record_format(rec)
            conv = convert(rec, fmt)
        except DataError as e:
            handle(e.at(src, n))
            continue
        rid = rec.get("id")
        conv.id = str(rid) if rid is not None else None
        conv.meta = {"source": src, "line": n, "format": fmt}
        yield conv


def read_conversations(path: PathLike | Iterable[PathLike], format: str = "auto", on_error: str = "raise",
                       report: SkipReport | None = None) -> Iterator[Conversation]:
    """Stream validated conversations from files, folders or globs (see the module docstring).

    Each conversation carries ``meta = {"source": path, "line": n, "format": fmt}``. With
    ``on_error="skip"`` rejected records are counted in ``report`` (pass one in to read it afterwards).
    """
    _check_choice(format, ("auto", *FORMATS), "format")
    _check_choice(on_error, ON_ERROR, "on_error")
    report = report if report is not None else SkipReport()
    action = ON_ERROR[on_error]
    files = expand_paths(path)  # resolve paths eagerly: a typo fails here, not at the first next()

    def gen() -> Iterator[Conversation]:
        for f in files:
            yield from read_file(f, format, lambda e: action(e, report))

    return gen()
