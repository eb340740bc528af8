"""Raw records of one data file, whatever holds them: JSON Lines, a JSON array, gzip of either, Parquet, CSV.

:func:`iter_records` yields ``(where, record)`` pairs; a record that cannot be read comes as
``(where, DataError)`` so a reader can skip it (counted, located) or raise it. ``where`` is the 1-based line
of a JSON Lines / CSV record, or a :class:`RecordIndex` (0-based, printed ``record N``) for JSON arrays and
Parquet files, where lines mean nothing.

What is caught per record, never as a traceback:

* bytes that are not UTF-8 (``invalid_encoding``) and lone surrogates such as ``"\\ud800"`` (``invalid_unicode``:
  the tokenizer cannot encode them), located to the field;
* nesting too deep for the JSON parser (``too_deep``);
* a UTF-8 byte-order mark is read (``utf-8-sig``), not taken for a broken first record; UTF-16 / UTF-32
  text (a ``FF FE`` / ``FE FF`` byte-order mark) is named as such, not read as garbage records;
* a JSON array inside a ``.jsonl`` file is read as the array it is (the reader reports it);
* a key given twice in one object (JSON keeps the last value silently) is reported through ``duplicates``;
* a file that cannot be read (permission, I/O error) is one line naming it, not a traceback.

A JSON array is decoded element by element (:meth:`json.JSONDecoder.raw_decode`), so a truncated or
damaged array still yields every record before the damage; the unreadable rest is one located error.
"""

from __future__ import annotations

import codecs
import gzip
import json
import re
from pathlib import Path
from typing import Any, BinaryIO, Iterator

from instructkit.data.record_checks import RecordIndex, _checked
from instructkit.errors import DataError, InstructkitError

Raw = tuple[int, Any]
#: suffixes a folder is searched for
SUFFIXES = (".json", ".jsonl", ".parquet", ".csv", ".gz")
_WS = re.compile(r"[ \t\n\r]*")


class _DupDecoder(json.JSONDecoder):
    """A decoder that notes every key given twice in one object (``self.dups``; the last value wins, as in
    ``json.loads``). Costs ~1.3x json.loads on chat records."""

    def __init__(self) -> None:
        self.dups: list[str] = []
        super().__init__(object_pairs_hook=self._pairs)

    def _pairs(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        d = dict(pairs)
        if len(d) != len(pairs):
            seen: set[str] = set()
            self.dups += [k for k, _ in pairs if k in seen or seen.add(k)]
        return d


def _parse(text: str, where: int, path: str, dec: json.JSONDecoder | None = None) -> Any:
    try:
        return (dec or _DupDecoder()).decode(text)
    except RecursionError:
        return DataError("JSON nested too deeply to read", path=path, line=where, reason="too_deep")
    except ValueError as e:
        return DataError(f"invalid JSON: {e}", path=path, line=where, reason="invalid_json")


def _iter_jsonl(f: BinaryIO, path: str, dups: list | None) -> Iterator[Raw]:
    dec = _DupDecoder()
    for n, raw in enumerate(f, 1):
        if n == 1 and raw.startswith(codecs.BOM_UTF8):
            raw = raw[len(codecs.BOM_UTF8):]
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            yield n, DataError(f"bytes that are not valid UTF-8 (at byte {e.start} of the line)", path=path,
                               line=n, reason="invalid_encoding")
            continue
        if not line.strip():
            continue
        dec.dups.clear()
        rec = _parse(line, n, path, dec)
        if dec.dups and dups is not None:
            dups.append((n, list(dec.dups)))
        yield n, rec if isinstance(rec, DataError) else _checked(n, rec, path, line, False)


def _decode_whole(data: bytes) -> tuple[str, bool]:
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    try:
        return data.decode("utf-8"), False
    except UnicodeDecodeError:  # keep going: the records holding the bad bytes are found and located
        return data.decode("utf-8", "surrogateescape"), True


def _line_of(text: str, idx: int) -> int:
    return text.count("\n", 0, idx) + 1


def _iter_json_text(text: str, path: str, bad_bytes: bool, dups: list | None) -> Iterator[Raw]:
    dec = _DupDecoder()
    i = _WS.match(text).end()
    if not text.startswith("[", i):
        data = _parse(text, 1, path)  # {"data": [...]}: one list-valued key; small files only in practice
        if isinstance(data, DataError):
            raise DataError(f"{data.detail} (the whole file is unreadable)", path=path, reason=data.reason)
        if isinstance(data, dict):
            lists = [v for v in data.values() if isinstance(v, list)]
            if len(lists) != 1:
                raise DataError("top level is an object, expected a list of records (or JSON Lines)",
                                path=path, reason="wrong_type")
            data = lists[0]
        if not isinstance(data, list):
            raise DataError(f"top level is a {type(data).__name__}, expected a list of records",
                            path=path, reason="wrong_type")
        for k, rec in enumerate(data):
            yield RecordIndex(k), rec
        return
    i = _WS.match(text, i + 1).end()
    k = 0
    if text.startswith("]", i):
        return
    while True:
        where = RecordIndex(k)
        dec.dups.clear()
        try:
            rec, j = dec.raw_decode(text, i)
        except (ValueError, RecursionError) as e:
            why = "JSON nested too deeply to read" if isinstance(e, RecursionError) else f"invalid JSON: {e.args[0]}"
            yield where, DataError(f"{why} (in the record starting at line {_line_of(text, i)}); the rest of the "
                                   "file from here cannot be read", path=path, line=where,
                                   reason="too_deep" if isinstance(e, RecursionError) else "invalid_json")
            return
        if dec.dups and dups is not None:
            dups.append((where, list(dec.dups)))
        yield where, _checked(where, rec, path, text[i:j], bad_bytes)
        k += 1
        i = _WS.match(text, j).end()
        if text.startswith(",", i):
            i = _WS.match(text, i + 1).end()
        elif text.startswith("]", i):
            return
        else:
            msg = "the file ends inside the array (truncated?)" if i >= len(text) else \
                f"expected ',' or ']' at line {_line_of(text, i)}"
            yield RecordIndex(k), DataError(f"invalid JSON: {msg}; the rest of the file cannot be read", path=path,
                                            line=RecordIndex(k), reason="invalid_json")
            return


_UTF_BOMS = ((b"\xff\xfe\x00\x00", "UTF-32", "FF FE 00 00"), (b"\x00\x00\xfe\xff", "UTF-32", "00 00 FE FF"),
              (b"\xff\xfe", "UTF-16", "FF FE"), (b"\xfe\xff", "UTF-16", "FE FF"))


def _kind(head: bytes, name: str) -> str:
    for bom, enc, shown in _UTF_BOMS:
        if head.startswith(bom):
            raise DataError(f"the file is {enc} text (byte-order mark {shown}); data files must be UTF-8: convert "
                            f"it, e.g. iconv -f {enc} -t UTF-8 IN > OUT", path=name, reason="invalid_encoding")
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"PK\x03\x04"):
        raise DataError("unsupported format: a zip archive (Excel?); export it as JSONL, JSON, CSV or Parquet",
                        path=name, reason="unknown_format")
    suffix = Path(name).suffix.lower()
    if suffix in (".csv", ".tsv"):
        return suffix[1:]
    body = head[len(codecs.BOM_UTF8):] if head.startswith(codecs.BOM_UTF8) else head
    first = body.lstrip()[:1]
    if first == b"[":
        return "array"
    if first == b"{":
        if suffix == ".jsonl":
            return "jsonl"
        line = body.split(b"\n", 1)[0]
        try:  # a .json file whose first line is a complete object is JSON Lines
            json.loads(line)
            return "jsonl"
        except ValueError:
            return "array"  # a pretty-printed object: {"data": [...]}
    if suffix in (".json", ".jsonl") or not first:
        return "jsonl"  # each line will say what is wrong with it
    raise DataError(f"unsupported format (suffix {suffix or 'none'}, content not JSON); expected .jsonl, .json, "
                    ".jsonl.gz, .csv or .parquet", path=name, reason="unknown_format")


def file_kind(path: str | Path) -> str:
    """``jsonl``, ``array``, ``parquet``, ``csv``, ``tsv`` or ``gzip`` (by content first, then suffix)."""
    try:
        with Path(path).open("rb") as f:
            head = f.read(4096)
    except OSError as e:
        raise unreadable(path, e) from None
    return _kind(head, str(path))


def unreadable(path: str | Path, err: OSError) -> InstructkitError:
    """A file that cannot be read (permission, I/O error): one line naming it and the cause."""
    return InstructkitError(f"{path}: cannot read: {err.strerror or err}")


def iter_records(path: str | Path, duplicates: list | None = None) -> Iterator[Raw]:
    """``(where, record)`` pairs of one file; unreadable records come as ``(where, DataError)``.
    ``duplicates`` (a list) receives ``(where, [keys])`` for every record holding a key twice."""
    try:
        yield from _iter_records(Path(path), duplicates)
    except OSError as e:  # read permission, EIO: the file, not the cache or the output, is at fault
        raise unreadable(path, e) from None


def _iter_records(p: Path, duplicates: list | None) -> Iterator[Raw]:
    kind = file_kind(p)
    if kind == "parquet":
        from instructkit.data.tabular import _iter_parquet
        yield from _iter_parquet(p)
        return
    opener = (lambda: gzip.open(p, "rb")) if kind == "gzip" else (lambda: p.open("rb"))
    with opener() as f:
        if kind == "gzip":
            try:
                head = f.peek(4096)[:4096] if hasattr(f, "peek") else b""
            except (OSError, EOFError) as e:
                raise DataError(f"unreadable gzip file: {e}", path=str(p), reason="invalid_json") from None
            kind = _kind(head, p.name[: -len(p.suffix)])
        if kind in ("csv", "tsv"):
            from instructkit.data.tabular import _iter_csv
            yield from _iter_csv(f, str(p), "," if kind == "csv" else "\t")
        elif kind == "jsonl":
            yield from _iter_jsonl(f, str(p), duplicates)
        else:
            text, bad = _decode_whole(f.read())
            yield from _iter_json_text(text, str(p), bad, duplicates)
