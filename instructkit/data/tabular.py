"""Raw records of tabular files: Parquet (by record index) and CSV / TSV (by line, the header being line 1).
Used by :func:`instructkit.data.files.iter_records`."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import BinaryIO, Iterator

from instructkit.data.record_checks import RecordIndex, _checked
from instructkit.errors import DataError


def _iter_parquet(path: Path) -> Iterator[tuple]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(str(path))
    except Exception as e:  # pyarrow raises ArrowInvalid / OSError for damaged files
        raise DataError(f"unreadable Parquet file: {e}", path=str(path), reason="invalid_json") from None
    k = 0
    for batch in pf.iter_batches(batch_size=1024):
        for rec in batch.to_pylist():
            yield RecordIndex(k), rec
            k += 1


def _iter_csv(f: BinaryIO, path: str, delimiter: str) -> Iterator[tuple]:
    text = io.TextIOWrapper(f, encoding="utf-8-sig", errors="surrogateescape", newline="")
    reader = csv.DictReader(text, delimiter=delimiter)
    try:
        if reader.fieldnames is None:  # reads the header now, so the first record is located after it
            return
    except csv.Error as e:
        yield 1, DataError(f"invalid CSV header: {e}", path=path, line=1, reason="invalid_json")
        return
    while True:
        start = reader.line_num + 1
        try:
            rec = next(reader)
        except StopIteration:
            return
        except csv.Error as e:
            yield start, DataError(f"invalid CSV: {e}", path=path, line=start, reason="invalid_json")
            continue
        rec = {k: v for k, v in rec.items() if k is not None}  # None: extra cells beyond the header
        yield start, _checked(start, rec, path, "".join(v for v in rec.values() if isinstance(v, str)), True)


