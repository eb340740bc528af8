"""Read SFT data files into :class:`Conversation` objects, streaming, with located errors.

* ``path`` may be a file, a folder (every ``*.jsonl``/``*.json``/``*.jsonl.gz``/``*.csv``/``*.parquet``
  directly inside, sorted), a glob (``data/*.jsonl``), or a list of those.
* Raw records come from :mod:`instructkit.data.files`: JSON Lines line by line (``meta["line"]`` is the
  1-based line; blank lines are not records), JSON arrays and Parquet by record index (``meta["line"]`` is
  a :class:`RecordIndex`, printed ``record N``), CSV by line, gzip of JSON/JSONL transparently. Encoding
  faults (bad UTF-8, lone surrogates, a BOM) and absurd nesting are located per record.
* The format is detected per file from its first record (:func:`detect_format`), unless ``format=``
  names one (see :mod:`instructkit.data.formats`).
* ``on_error="raise"`` raises the first :class:`DataError` (``file:line: field 'x': message``);
  ``on_error="skip"`` counts every rejected record by reason in a :class:`SkipReport` and goes on.
  The report also counts records read, repairs (ShareGPT's leading assistant turn, share banners) and
  source fields no converter reads.
"""

from __future__ import annotations

import glob as _glob
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Union

from instructkit.chat.conversation import Conversation
from instructkit.data.files import SUFFIXES, Raw, file_kind, iter_records
from instructkit.data.record_checks import RecordIndex
from instructkit.data.formats import FORMATS, convert, detect_record_format
from instructkit.errors import DataError, InstructkitError

PathLike = Union[str, Path]
__all__ = ["Raw", "RecordIndex", "SkipReport", "detect_format", "expand_paths", "iter_records",
           "read_conversations"]


@dataclass
class SkipReport:
    """Skipped records counted by reason, with the first few ``file:line field: message`` per reason."""

    max_examples: int = 3
    counts: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    #: records kept after an explicit repair, by repair (e.g. repaired_leading_assistant, dropped_share_banner)
    repaired: Counter = field(default_factory=Counter)
    #: source fields no converter reads, by "format: field" (counted, so nothing is dropped unseen)
    unknown_fields: Counter = field(default_factory=Counter)
    #: file-level remarks (e.g. a JSON array in a .jsonl file)
    notes: list[str] = field(default_factory=list)
    #: records read from the files, good or bad (read = kept + skipped + dropped, see PrepareReport)
    read: int = 0

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
        self.repaired.update(other.repaired)
        self.unknown_fields.update(other.unknown_fields)
        self.notes += other.notes
        self.read += other.read

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def to_dict(self) -> dict[str, Any]:
        return {"counts": dict(self.counts), "examples": self.examples, "repaired": dict(self.repaired),
                "unknown_fields": dict(self.unknown_fields), "notes": self.notes, "read": self.read}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "SkipReport":
        return cls(counts=Counter(d.get("counts", {})), examples=dict(d.get("examples", {})),
                   repaired=Counter(d.get("repaired", {})), unknown_fields=Counter(d.get("unknown_fields", {})),
                   notes=list(d.get("notes", [])), read=int(d.get("read", 0)))

    def extras(self) -> list[str]:
        """Lines for what was repaired, fields nobody reads, and file notes."""
        out = [f"repaired: {', '.join(f'{k} {n}' for k, n in self.repaired.most_common())}"] if self.repaired else []
        if self.unknown_fields:
            out.append("fields not read (ignored): " + ", ".join(f"{k} ({n} records)"
                                                                   for k, n in self.unknown_fields.most_common(12)))
        return out + self.notes

    def __rich__(self) -> Any:
        from rich.table import Table

        t = Table(title=f"skipped records: {self.total}", show_lines=False)
        t.add_column("reason")
        t.add_column("count", justify="right")
        t.add_column("first examples (file:line field: message)", overflow="fold")
        for reason, n in self.counts.most_common():
            t.add_row(reason, str(n), "\n".join(self.examples.get(reason, [])))
        if not self.extras():
            return t
        from rich.console import Group
        from rich.text import Text
        return Group(t, *(Text(x) for x in self.extras()))

    def __str__(self) -> str:
        lines = [f"skipped records: {self.total}"]
        for reason, n in self.counts.most_common():
            lines.append(f"  {reason}: {n}")
            lines += [f"    {e}" for e in self.examples.get(reason, [])]
        return "\n".join(lines + self.extras())


# -- paths --------------------------------------------------------------------------------------------
def expand_paths(paths: PathLike | Iterable[PathLike]) -> list[Path]:
    """Files named by ``paths`` (files, folders, globs), in a stable order; an error if one names nothing."""
    items = [paths] if isinstance(paths, (str, Path)) else list(paths)
    out: list[Path] = []
    for item in items:
        p = Path(item).expanduser()
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix in SUFFIXES
                           and (f.suffix != ".gz" or f.name.endswith((".jsonl.gz", ".json.gz"))))
            if not found:
                raise InstructkitError(f"{p}: folder holds no *.jsonl, *.json, *.jsonl.gz, *.csv or *.parquet files")
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


# -- raw records: instructkit.data.files -----------------------------------------------------------------
def _notes_for(path: Path, report: "SkipReport") -> None:
    if path.suffix == ".jsonl" and file_kind(path) == "array":
        report.notes.append(f"{path}: this file is a JSON array, not JSON Lines; read as a JSON array "
                            "(records located as 'record N')")


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


def read_file(path: Path, fmt: str, handle: Callable[[DataError], None], report: SkipReport | None = None,
              repair_leading_assistant: bool = True) -> Iterator[Conversation]:
    """Conversations of one file; ``report`` (when given) counts records read, repairs and unread fields."""
    src = str(path)
    report = report if report is not None else SkipReport()
    _notes_for(path, report)
    dups: list = []
    n_read = 0
    for n, rec in iter_records(path, dups):
        n_read += 1
        report.read += 1
        if isinstance(rec, DataError):
            handle(rec)
            continue
        try:
            if fmt == "auto":  # first parseable record decides for the whole file
                fmt = detect_record_format(rec)
            conv = convert(rec, fmt, repair_leading_assistant=repair_leading_assistant)
        except DataError as e:
            handle(e.at(src, n))
            continue
        if conv.meta:  # what the converter repaired or did not read
            report.repaired.update(conv.meta.get("repairs", ()))
            report.unknown_fields.update(f"{fmt}: {k}" for k in conv.meta.get("unknown_fields", ()))
        rid = rec.get("id")
        conv.id = str(rid) if rid is not None else None
        conv.meta = {"source": src, "line": n, "format": fmt}
        yield conv
    _file_notes(src, n_read, dups, report)


def _file_notes(src: str, n_read: int, dups: list, report: SkipReport) -> None:
    """Warnings about a whole file: it holds no record; records give a key twice (JSON keeps the last)."""
    if not n_read:
        report.notes.append(f"{src}: no records (the file is empty or holds only whitespace)")
    if dups:
        where, keys = dups[0]
        report.notes.append(f"{src}: {len(dups)} record(s) give a key twice; the last value is used "
                            f"(first: {src}:{where}, key {keys[0]!r})")


def read_conversations(path: PathLike | Iterable[PathLike], format: str = "auto", on_error: str = "raise",
                       report: SkipReport | None = None, repair_leading_assistant: bool = True
                       ) -> Iterator[Conversation]:
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
            yield from read_file(f, format, lambda e: action(e, report), report, repair_leading_assistant)

    return gen()
