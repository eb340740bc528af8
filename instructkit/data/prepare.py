"""Tokenize + mask conversations into an arrow dataset, cached by a fingerprint of everything that matters.

:func:`prepare_dataset` reads files (streaming, :func:`read_conversations`), renders them in chunks with
:meth:`Renderer.render_batch` (one batched fast-tokenizer call per chunk) in ``num_proc`` forked worker
processes, and writes the rows straight into an arrow file: columns ``input_ids``, ``labels`` (-100 =
not trained), ``length``, ``n_trained``, ``truncated``, ``source``, ``line``.

Cache: ``<cache_dir>/<fingerprint>/{data.arrow,report.json}`` with ``cache_dir`` defaulting to
``instructkit.models.cache_dir()/data`` (``~/.cache/instructkit/data``, or ``$INSTRUCTKIT_CACHE/data``).
The fingerprint hashes the data files' (resolved path, size, mtime_ns), the tokenizer (its full
``tokenizer.json`` serialisation and special tokens), the template source, max_length, format, on_error,
limit and the source of the modules that produce the rows (so a code change invalidates old caches).
A second call with the same inputs memory-maps the saved arrow file without rendering anything.

Longer examples follow ``truncate`` (right | left_prompt | drop, :func:`truncate`). Examples whose trained
tokens are all cut off cannot teach anything: they are always dropped and counted (``dropped_no_trained``),
in either on_error mode, like ``drop``'s ``dropped_too_long``; every drop is located (``drops.jsonl`` in the
cache folder, the first few in the report) and truncated examples are counted. The report's identity:
``read == examples + skipped + dropped``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from itertools import islice
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from instructkit.chat.conversation import Conversation
from instructkit.chat.render import Renderer
from instructkit.data.prepare_report import PrepareReport
from instructkit.data.readers import ON_ERROR, PathLike, _check_choice, expand_paths, read_conversations
from instructkit.data.render_rows import CHUNK, TRUNCATE, _features, _rendered_tables, truncate
from instructkit.errors import DataError, InstructkitError
from instructkit.outputs import write_error, write_errors

PREPARE_VERSION = "1"
__all__ = ["CHUNK", "TRUNCATE", "PrepareReport", "default_cache_dir", "prepare_conversations", "prepare_dataset",
           "tokenizer_hash", "truncate"]


# -- fingerprint ----------------------------------------------------------------------------------------
_CODE = ("chat/render.py", "chat/conversation.py", "data/formats.py", "data/readers.py", "data/prepare.py",
         "data/prepare_report.py", "data/render_rows.py", "data/files.py", "data/tabular.py", "data/record_checks.py")


def _code_hash() -> str:
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256(PREPARE_VERSION.encode())
    for rel in _CODE:
        h.update((root / rel).read_bytes())
    return h.hexdigest()


def tokenizer_hash(tokenizer: Any) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    body = backend.to_str() if backend is not None else json.dumps(sorted(tokenizer.get_vocab().items()))
    specials = json.dumps({k: str(v) for k, v in sorted(tokenizer.special_tokens_map.items())})
    return hashlib.sha256((body + specials + type(tokenizer).__name__).encode()).hexdigest()


def fingerprint(parts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _files_key(files: Sequence[Path]) -> list[str]:
    return [f"{f.resolve()}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in files]


def default_cache_dir() -> Path:
    from instructkit.models import cache_dir
    return cache_dir() / "data"



# -- the build ------------------------------------------------------------------------------------------
def _build(convs: Iterable[Conversation], renderer: Renderer, report: PrepareReport, on_error: str,
           num_proc: int, out_file: Path | None, progress: bool, max_length: int | None) -> Any:
    import pyarrow as pa
    from datasets import Dataset, DatasetInfo
    from datasets.arrow_writer import ArrowWriter
    from datasets.table import InMemoryTable
    from tqdm.auto import tqdm

    action = ON_ERROR[on_error]
    writer = ArrowWriter(features=_features(), path=str(out_file)) if out_file is not None else None
    drops = (out_file.parent / "drops.jsonl").open("w", encoding="utf-8") if out_file is not None else None
    tables = []
    bar = tqdm(desc="prepare", unit=" ex", disable=not progress, mininterval=0.5)
    try:
        for table, errors in _rendered_tables(convs, renderer, num_proc, max_length, report.truncate):
            for e in errors:
                if e.reason in ("no_trained_tokens", "too_long"):  # dropped: counted and located, any mode
                    report.drop(e, getattr(e, "length", 0))
                    if drops is not None:
                        drops.write(json.dumps({"where": str(e).split(": field", 1)[0], "reason": e.reason,
                                                "length": getattr(e, "length", 0), "message": e.detail}) + "\n")
                else:
                    action(e, report.skipped)
            if table.num_rows:
                writer.write_table(table) if writer is not None else tables.append(table)
                report.examples += table.num_rows
                report.tokens += pa.compute.sum(table["length"]).as_py()
                report.trained_tokens += pa.compute.sum(table["n_trained"]).as_py()
                report.truncated += pa.compute.sum(table["truncated"].cast(pa.int32())).as_py()
            bar.update(table.num_rows + len(errors))
    finally:
        bar.close()
        if drops is not None:
            drops.close()
    report.read = report.skipped.read
    if writer is not None:
        writer.finalize()
        return Dataset.from_file(str(out_file))
    table = pa.concat_tables(tables) if tables else _features().arrow_schema.empty_table()
    return Dataset(InMemoryTable(table), info=DatasetInfo(features=_features()))


def _cached_or_build(key: dict[str, Any], convs: Iterable[Conversation], renderer: Renderer, on_error: str,
                     num_proc: int, cache_dir: PathLike | None, use_cache: bool, progress: bool,
                     report: PrepareReport, max_length: int | None) -> tuple[Any, PrepareReport]:
    from datasets import Dataset

    t0 = time.perf_counter()
    report.fingerprint = fingerprint(key)
    if not use_cache:
        ds = _build(convs, renderer, report, on_error, num_proc, None, progress, max_length)
        report.seconds = time.perf_counter() - t0
        return ds, report
    folder = Path(cache_dir or default_cache_dir()) / report.fingerprint
    if (folder / "report.json").is_file():
        cached = PrepareReport.from_dict(json.loads((folder / "report.json").read_text()))
        cached.cached, cached.cache_path, cached.seconds = True, str(folder), time.perf_counter() - t0
        return Dataset.from_file(str(folder / "data.arrow")), cached
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=folder.name + ".tmp"))
    try:
        _build(convs, renderer, report, on_error, num_proc, tmp / "data.arrow", progress, max_length)
        report.seconds = time.perf_counter() - t0
        report.cache_path = str(folder)
        report.drops_path = str(folder / "drops.jsonl")
        (tmp / "report.json").write_text(json.dumps(report.to_dict(), indent=1))
        (tmp / "fingerprint.json").write_text(json.dumps(key, indent=1, default=str))
        if folder.exists():  # another process finished the same work first
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, folder)  # atomic: a half-written cache is never found
    except BaseException as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, write_errors()):  # disk full: one line, no half-written cache left behind
            raise write_error(folder, e) from None
        raise
    return Dataset.from_file(str(folder / "data.arrow")), report


def prepare_dataset(paths: PathLike | Iterable[PathLike], tokenizer: Any, *, template: str | None = None,
                    max_length: int | None = 2048, format: str = "auto", on_error: str = "raise",
                    cache_dir: PathLike | None = None, num_proc: int = 2, limit: int | None = None,
                    use_cache: bool = True, progress: bool = False, truncate: str = "right",
                    repair_leading_assistant: bool = True) -> tuple[Any, PrepareReport]:
    """Files -> (``datasets.Dataset`` of input_ids/labels/length/n_trained/..., :class:`PrepareReport`).

    ``truncate``: right | left_prompt | drop (see :func:`truncate`); ``repair_leading_assistant``: see
    :func:`instructkit.data.formats.from_sharegpt`."""
    _check_choice(on_error, ON_ERROR, "on_error")
    _check_choice(truncate, TRUNCATE, "truncate")
    _check_max_length(max_length)
    files = expand_paths(paths)
    renderer = Renderer(tokenizer, template, None)  # the truncation policy is applied here, not by the renderer
    key = {"files": _files_key(files), "tokenizer": tokenizer_hash(tokenizer),
           "template": hashlib.sha256(renderer.source.encode()).hexdigest(), "max_length": max_length,
           "format": format, "on_error": on_error, "limit": limit, "code": _code_hash(), "truncate": truncate,
           "repair_leading_assistant": repair_leading_assistant}
    report = PrepareReport(truncate=truncate)
    convs = read_conversations(files, format=format, on_error=on_error, report=report.skipped,
                               repair_leading_assistant=repair_leading_assistant)
    ds, report = _cached_or_build(key, islice(convs, limit), renderer, on_error, num_proc, cache_dir, use_cache,
                                  progress, report, max_length)
    if not report.read:  # an empty file is a mistake to name, not a dataset of 0 rows to train on
        raise DataError(f"no records to read in {', '.join(map(str, files))} (empty or only whitespace)",
                        reason="empty_file")
    return ds, report


def _check_max_length(max_length: int | None) -> None:
    if max_length is not None and (not isinstance(max_length, int) or max_length < 1):
        raise InstructkitError(f"max_length must be a positive number of tokens, got {max_length!r}")


def prepare_conversations(convs: Sequence[Conversation], tokenizer: Any, *, template: str | None = None,
                          max_length: int | None = 2048, on_error: str = "raise", cache_dir: PathLike | None = None,
                          num_proc: int = 1, progress: bool = False, truncate: str = "right"
                          ) -> tuple[Any, PrepareReport]:
    """In-memory conversations (task mixtures, the demo) -> the same dataset and report.

    Cached only when ``cache_dir`` is given, keyed by a hash of the conversations' content.
    """
    _check_choice(on_error, ON_ERROR, "on_error")
    _check_choice(truncate, TRUNCATE, "truncate")
    _check_max_length(max_length)
    renderer = Renderer(tokenizer, template, None)
    use_cache = cache_dir is not None
    content = hashlib.sha256()
    if use_cache:
        for c in convs:
            content.update(json.dumps(c.to_dict(), sort_keys=True, default=str).encode())
    key = {"conversations": content.hexdigest(), "tokenizer": tokenizer_hash(tokenizer) if use_cache else "",
           "template": hashlib.sha256(renderer.source.encode()).hexdigest(), "max_length": max_length,
           "on_error": on_error, "code": _code_hash(), "truncate": truncate}
    report = PrepareReport(truncate=truncate)

    def checked() -> Iterator[Conversation]:
        # same rules as the readers: validate structure, located by meta when there is one
        for c in convs:
            report.skipped.read += 1
            try:
                yield c.validate()
            except DataError as e:
                ON_ERROR[on_error](e.at(c.meta.get("source"), c.meta.get("line")), report.skipped)

    return _cached_or_build(key, checked(), renderer, on_error, num_proc, cache_dir, use_cache, progress, report,
                            max_length)
