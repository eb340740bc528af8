"""Conversations -> arrow rows (``input_ids``, ``labels``, ``length``, ``n_trained``, ``truncated``, ``source``,
``line``): the part of :mod:`instructkit.data.prepare` that runs in the worker processes.

Chunks of conversations are rendered with one batched fast-tokenizer call each (:func:`_render_chunk`),
the truncation policy is applied (:func:`truncate`), and :func:`_rendered_tables` spreads the chunks over a
fork pool, in input order, never reading far ahead of the workers.

**A huge record never reaches the tokenizer whole.** A fast tokenizer's encoding costs ~800 bytes per token
(ids, offsets, token strings...): one 50 MB record took 10 GB and was OOM-killed even with max_length 256.
No token covers more than ``L`` characters (the longest vocabulary entry; byte-level: one character per
byte), so a text longer than ``(max_length + 64) x L`` characters certainly has more than max_length
tokens. Such a text is bounded before tokenizing (:func:`bounded`): ``truncate: drop`` drops it as
``too_long`` (its length in the report is a lower bound); ``right`` / ``left_prompt`` tokenize only its
first / last ``(max_length + 64) x L`` characters (the 64 spare tokens absorb the merge at the cut) and
keep the example, counted as truncated. Shorter texts are untouched.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from itertools import chain, islice
from typing import Any, Iterable, Iterator

from instructkit.chat.conversation import Conversation
from instructkit.chat.render import IGNORE_INDEX, Renderer
from instructkit.errors import DataError

CHUNK = 256  # conversations per render_batch call / per task sent to a worker
SPARE_TOKENS = 64  # tokens tokenized past max_length in a bounded window (the cut may change the last few)
#: what to do with an example longer than max_length (``data.truncate``)
TRUNCATE = ("right", "left_prompt", "drop")

# -- worker state (set by _init_worker) ------------------------------------------------------------------
_RENDERER: Renderer | None = None
_MAX_LENGTH: int | None = None
_POLICY = "right"
_TOKEN_CHARS = 1  # the most characters one token of _RENDERER's tokenizer can cover


def max_token_chars(tokenizer: Any) -> int:
    """An upper bound of the characters one token covers: the longest vocabulary entry (added tokens
    included). Byte-level vocabularies spell one byte per character, so this bounds bytes and characters."""
    try:
        return max(1, max(map(len, tokenizer.get_vocab())))
    except (AttributeError, TypeError, ValueError, NotImplementedError):
        return 1 << 16  # unknown vocabulary: a bound that still keeps a 50 MB record away from the tokenizer


def char_budget(max_length: int | None, token_chars: int) -> int | None:
    """Texts longer than this many characters have more than max_length tokens (None: no max_length)."""
    return None if max_length is None else (max_length + SPARE_TOKENS) * token_chars


def too_long_unread(n_chars: int, max_length: int, token_chars: int, policy: str) -> DataError:
    e = DataError(f"{n_chars} characters, more than max_length={max_length} tokens can hold (a token covers at "
                  f"most {token_chars}); dropped before tokenizing (truncate: {policy})", field="messages",
                  reason="too_long")
    e.length = n_chars // token_chars  # at least this many tokens
    return e


def bounded(text: str, spans: list[tuple[int, int]]) -> tuple[str, list[tuple[int, int]]]:
    """``text`` and its trained ``spans`` cut to the window the policy keeps, when the text is longer than
    the character budget (module docstring); raises ``too_long`` for ``truncate: drop``."""
    budget = char_budget(_MAX_LENGTH, _TOKEN_CHARS)
    if budget is None or len(text) <= budget:
        return text, spans
    if _POLICY == "drop":
        raise too_long_unread(len(text), _MAX_LENGTH, _TOKEN_CHARS, _POLICY)
    start = len(text) - budget if _POLICY == "left_prompt" else 0
    cut = [(max(a - start, 0), min(b - start, budget)) for a, b in spans if b > start and a < start + budget]
    return text[start:start + budget], cut


def _content_chars(conv: Conversation) -> int:
    return sum(len(m.content or "") for m in conv.messages)


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
    out = err.at(src, conv.meta.get("line")) if src is not None else err
    if hasattr(err, "length"):
        out.length = err.length
    return out


def _render_chunk_generic(convs: list[Conversation]) -> tuple[Any, list[DataError]]:
    import numpy as np
    import pyarrow as pa

    cols: dict[str, list] = {k: [] for k in ("input_ids", "labels", "length", "n_trained", "truncated",
                                             "source", "line")}
    errors = []
    budget = char_budget(_MAX_LENGTH, _TOKEN_CHARS)
    if budget is not None:  # the renderer tokenizes whole texts: keep huge ones from it (no window here)
        big = [c for c in convs if _content_chars(c) > budget]
        errors += [_located(too_long_unread(_content_chars(c), _MAX_LENGTH, _TOKEN_CHARS, _POLICY), c) for c in big]
        convs = [c for c in convs if _content_chars(c) <= budget]
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
            t, sp = bounded(*r.text_and_spans(conv))
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
    global _RENDERER, _MAX_LENGTH, _POLICY, _TOKEN_CHARS
    _RENDERER, _MAX_LENGTH, _POLICY = renderer, max_length, policy
    _TOKEN_CHARS = max_token_chars(renderer.tokenizer)
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

