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
import multiprocessing as mp
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from itertools import chain, islice
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from instructkit.chat.conversation import Conversation
from instructkit.chat.render import IGNORE_INDEX, Renderer
from instructkit.data.readers import ON_ERROR, PathLike, SkipReport, _check_choice, expand_paths, read_conversations
from instructkit.errors import DataError, InstructkitError
from instructkit.outputs import write_error, write_errors

PREPARE_VERSION = "1"
CHUNK = 256  # conversations per render_batch call / per task sent to a worker


#: what to do with an example longer than max_length (``data.truncate``)
TRUNCATE = ("right", "left_prompt", "drop")


@dataclass
class PrepareReport:
    """Counts of one prepare run: ``read == examples + skipped.total + dropped_no_trained + dropped_too_long``."""

    read: int = 0                 # records read from the files (good or bad); in-memory: conversations given
    examples: int = 0             # rows in the dataset (kept)
    tokens: int = 0
    trained_tokens: int = 0
    truncated: int = 0            # kept, but cut to max_length (right: the end; left_prompt: the start)
    dropped_no_trained: int = 0   # no trained token left (e.g. truncated away): dropped, always counted
    dropped_too_long: int = 0     # longer than max_length with truncate=drop
    skipped: SkipReport = field(default_factory=SkipReport)   # records the reader/renderer rejected
    dropped: SkipReport = field(default_factory=SkipReport)   # the drops, by reason, with located examples
    dropped_lengths: list[int] = field(default_factory=list)  # full token length of every dropped example
    truncate: str = "right"
    drops_path: str | None = None  # drops.jsonl in the cache folder: every drop, located
    fingerprint: str = ""
    cache_path: str | None = None
    cached: bool = False
    seconds: float = 0.0

    @property
    def trained_share(self) -> float:
        return self.trained_tokens / self.tokens if self.tokens else 0.0

    @property
    def dropped_total(self) -> int:
        return self.dropped_no_trained + self.dropped_too_long

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["skipped"] = self.skipped.to_dict()
        d["dropped"] = self.dropped.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PrepareReport":
        d = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        d["skipped"] = SkipReport.from_dict(d.get("skipped", {}))
        d["dropped"] = SkipReport.from_dict(d.get("dropped", {}))
        return cls(**d)

    def summary(self) -> str:
        src = f"cache hit {self.cache_path}" if self.cached else f"{self.seconds:.1f} s"
        drops = f"{self.dropped_no_trained} dropped with no trained token"
        if self.dropped_too_long or self.truncate == "drop":
            drops += f", {self.dropped_too_long} dropped as too long"
        return (f"{self.read} read: {self.examples} kept, {self.skipped.total} skipped, {drops}; "
                f"{self.truncated} truncated (truncate: {self.truncate}); "
                f"{self.tokens} tokens, {self.trained_share:.1%} trained; {src}")

    def drop(self, err: DataError, length: int) -> None:
        if err.reason == "too_long":
            self.dropped_too_long += 1
        else:
            self.dropped_no_trained += 1
        self.dropped.add(err)
        self.dropped_lengths.append(length)


# -- fingerprint ----------------------------------------------------------------------------------------
_CODE = ("chat/render.py", "chat/conversation.py", "data/formats.py", "data/readers.py", "data/prepare.py")


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


# -- rendering (runs in the workers) ----------------------------------------------------------------------
_RENDERER: Renderer | None = None
_MAX_LENGTH: int | None = None
_POLICY = "right"


def _features() -> Any:
    from datasets import Features, Sequence as Seq, Value
    return Features({"input_ids": Seq(Value("int32")), "labels": Seq(Value("int32")), "length": Value("int32"),
                     "n_trained": Value("int32"), "truncated": Value("bool"), "source": Value("string"),
                     "line": Value("int64")})


def truncate(ids: Any, trained: Any, max_length: int | None, policy: str) -> tuple[Any, Any, bool]:
    """Apply the truncation ``policy`` to numpy ``ids`` / ``trained`` (bool) arrays; returns (ids, trained,
    cut) or raises a DataError (``too_long`` for drop, ``no_trained_tokens`` when nothing trained is left).

    * ``right``: keep the first max_length tokens (the answer of a long prompt may be cut away);
    * ``left_prompt``: keep the last max_length tokens, so the answer survives and the start of the prompt
      (or of a long conversation, its earliest turns) is cut - TRL's ``keep_end``;
    * ``drop``: drop the example (counted and located).
    """
    n = len(ids)
    cut = max_length is not None and n > max_length
    if cut:
        if policy == "drop":
            raise DataError(f"{n} tokens, longer than max_length={max_length} (truncate: drop)", field="messages",
                            reason="too_long")
        keep = slice(n - max_length, n) if policy == "left_prompt" else slice(0, max_length)
        ids, trained = ids[keep], trained[keep]
    if not trained.any():
        why = (f"no trained token left after truncation to max_length={max_length} (truncate: {policy}"
               + ("; truncate: left_prompt keeps the answer)" if policy == "right" else ")") if cut
               else "no trained token (no assistant content)")
        raise DataError(why, field="messages", reason="no_trained_tokens")
    return ids, trained, bool(cut)


def _render_chunk(convs: list[Conversation]) -> tuple[Any, list[DataError]]:
    """Render a chunk; return an arrow table of the good rows (cheap to send between processes) and errors."""
    backend = getattr(_RENDERER.tokenizer, "backend_tokenizer", None)
    if backend is not None and backend.truncation is None and backend.padding is None:
        return _render_chunk_columnar(convs, backend)
    return _render_chunk_generic(convs)


def _located(err: DataError, conv: Conversation) -> DataError:
    src = conv.meta.get("source")
    return err.at(src, conv.meta.get("line")) if src is not None else err


def _render_chunk_generic(convs: list[Conversation]) -> tuple[Any, list[DataError]]:
    import numpy as np
    import pyarrow as pa

    cols: dict[str, list] = {k: [] for k in ("input_ids", "labels", "length", "n_trained", "truncated",
                                             "source", "line")}
    errors = []
    # the renderer runs without max_length (its own cut is right-only); the policy is applied here
    for conv, r in zip(convs, _RENDERER.render_batch(convs)):
        if isinstance(r, DataError):
            errors.append(_located(r, conv))
            continue
        ids, labels = np.asarray(r.input_ids), np.asarray(r.labels)
        try:
            ids, trained, cut = truncate(ids, labels != IGNORE_INDEX, _MAX_LENGTH, _POLICY)
        except DataError as e:
            e = _located(e, conv)
            e.length = len(r.input_ids)
            errors.append(e)
            continue
        cols["input_ids"].append(ids.tolist())
        cols["labels"].append(np.where(trained, ids, IGNORE_INDEX).tolist())
        cols["length"].append(len(ids))
        cols["n_trained"].append(int(trained.sum()))
        cols["truncated"].append(cut)
        cols["source"].append(str(conv.meta.get("source", "")))
        cols["line"].append(int(conv.meta.get("line", -1)))
    return pa.table(cols, schema=_features().arrow_schema), errors


def _render_chunk_columnar(convs: list[Conversation], backend: Any) -> tuple[Any, list[DataError]]:
    """:meth:`Renderer.render_batch` semantics (same text and spans, same rule: a token is trained iff its
    start offset lies in a trained span, same truncation and no-trained-token rule) with the per-token work
    in numpy/arrow instead of Python lists; the parity test against ``render()`` guards it. The batched
    call is the one transformers makes for ``tokenizer(texts, add_special_tokens=False)``."""
    import numpy as np
    import pyarrow as pa

    r = _RENDERER
    texts, spans, keep, errors = [], [], [], []
    for conv in convs:
        try:
            t, sp = r.text_and_spans(conv)
        except DataError as e:
            errors.append(_located(e, conv))
            continue
        texts.append(t)
        spans.append(sp)
        keep.append(conv)
    try:
        encs = backend.encode_batch(texts, add_special_tokens=False) if texts else []
    except TypeError:  # a lone surrogate (in-memory data; files are checked by the readers): find which one
        encs, ok = [], []
        for t, sp, conv in zip(texts, spans, keep):
            try:
                encs.append(backend.encode(t, add_special_tokens=False))
                ok.append((sp, conv))
            except TypeError:
                errors.append(_located(DataError("text holds a lone surrogate (e.g. \\ud800) that the tokenizer "
                                                 "cannot encode", field="messages", reason="invalid_unicode"), conv))
        spans, keep = [sp for sp, _ in ok], [c for _, c in ok]
    ids_parts, lab_parts, lengths, n_tr, trunc, srcs, lines = [], [], [], [], [], [], []
    for conv, enc, sp in zip(keep, encs, spans):
        ids = np.asarray(enc.ids, dtype=np.int32)
        starts = np.asarray(enc.offsets, dtype=np.int64).reshape(-1, 2)[:, 0]
        trained = np.zeros(len(ids), dtype=bool)
        for a, b in sp:
            trained |= (starts >= a) & (starts < b)
        full = len(ids)
        try:
            ids, trained, cut = truncate(ids, trained, _MAX_LENGTH, _POLICY)
        except DataError as e:
            e = _located(e, conv)
            e.length = full
            errors.append(e)
            continue
        ids_parts.append(ids)
        lab_parts.append(np.where(trained, ids, np.int32(IGNORE_INDEX)).astype(np.int32))
        lengths.append(len(ids))
        n_tr.append(int(trained.sum()))
        trunc.append(bool(cut))
        srcs.append(str(conv.meta.get("source", "")))
        lines.append(int(conv.meta.get("line", -1)))
    offs = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))

    def lists(parts: list) -> Any:
        flat = np.concatenate(parts) if parts else np.zeros(0, dtype=np.int32)
        return pa.ListArray.from_arrays(offs, pa.array(flat, type=pa.int32()))

    table = pa.table({"input_ids": lists(ids_parts), "labels": lists(lab_parts),
                      "length": pa.array(lengths, pa.int32()), "n_trained": pa.array(n_tr, pa.int32()),
                      "truncated": pa.array(trunc, pa.bool_()), "source": pa.array(srcs, pa.string()),
                      "line": pa.array(lines, pa.int64())})
    return table.cast(_features().arrow_schema), errors


def _init_worker(renderer: Renderer, single_threaded: bool = False, max_length: int | None = None,
                 policy: str = "right") -> None:
    global _RENDERER, _MAX_LENGTH, _POLICY
    _RENDERER, _MAX_LENGTH, _POLICY = renderer, max_length, policy
    if single_threaded:  # one process per core: the tokenizer's own Rust threads would oversubscribe
        os.environ["TOKENIZERS_PARALLELISM"] = "false"


def _chunks(it: Iterable[Conversation], n: int) -> Iterator[list[Conversation]]:
    it = iter(it)
    while chunk := list(islice(it, n)):
        yield chunk


def _rendered_tables(convs: Iterable[Conversation], renderer: Renderer, num_proc: int, max_length: int | None,
                     policy: str) -> Iterator[tuple[Any, list]]:
    """Results in input order. num_proc > 1: a fork pool with at most 2 chunks in flight per worker, so a
    streaming reader is never read far ahead (Pool.imap would drain the whole input into its queue)."""
    chunks = _chunks(convs, CHUNK)
    head = list(islice(chunks, 2))
    # one chunk: a pool would cost more than it saves; no fork (Windows): in-process
    if num_proc <= 1 or len(head) < 2 or "fork" not in mp.get_all_start_methods():
        _init_worker(renderer, False, max_length, policy)
        yield from map(_render_chunk, chain(head, chunks))
        return
    ctx = mp.get_context("fork")  # fork: workers inherit the tokenizer, nothing is pickled at start-up
    with ctx.Pool(num_proc, initializer=_init_worker, initargs=(renderer, True, max_length, policy)) as pool:
        pending: list = []
        for chunk in chain(head, chunks):
            pending.append(pool.apply_async(_render_chunk, (chunk,)))
            if len(pending) >= 2 * num_proc:
                yield pending.pop(0).get()
        for p in pending:
            yield p.get()


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
    return _cached_or_build(key, islice(convs, limit), renderer, on_error, num_proc, cache_dir, use_cache,
                            progress, report, max_length)


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
