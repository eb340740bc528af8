"""Where training examples come from: the data stage's ``prepare_dataset`` when present, else reading and
rendering here. Either way the engine sees a sequence of ``{"input_ids": [...], "labels": [...]}``.
"""

from __future__ import annotations

import importlib
import inspect
import json
import random
from collections import Counter
from pathlib import Path
from typing import Any, Iterator, Sequence

from instructkit.chat import Conversation, Renderer
from instructkit.errors import DataError, InstructkitError


def render_conversations(convs: Sequence[Conversation], tokenizer: Any, template: str | None,
                         max_length: int | None, on_error: str = "raise") -> tuple[list[dict], Counter]:
    """Render with the chat renderer; errors raise (on_error=raise) or are counted by reason."""
    renderer = Renderer(tokenizer, template, max_length)
    out, skipped = [], Counter()
    for i in range(0, len(convs), 256):
        for r in renderer.render_batch(convs[i:i + 256]):
            if isinstance(r, DataError):
                if on_error == "raise":
                    raise r
                skipped[r.reason] += 1
                continue
            out.append({"input_ids": r.input_ids, "labels": r.labels})
    skipped.update({f"truncated (kept)": renderer.stats.get("truncated", 0)})
    return out, skipped


def to_records(examples: Sequence[Any], tokenizer: Any, template: str | None, max_length: int | None) -> list[dict]:
    """Accept rendered dicts or :class:`Conversation` objects (rendered here)."""
    if examples and isinstance(examples[0], Conversation):
        return render_conversations(list(examples), tokenizer, template, max_length)[0]
    return [{"input_ids": list(e["input_ids"]), "labels": list(e["labels"])} for e in examples]


# -- a minimal reader, used only while instructkit.data has neither prepare nor readers ----------------
def _record_to_conv(rec: dict[str, Any]) -> Conversation:
    if "messages" in rec:
        return Conversation.from_messages(rec["messages"])
    if "conversations" in rec:  # ShareGPT
        roles = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
        return Conversation.from_messages({"role": roles.get(m["from"], m["from"]), "content": m["value"]}
                                          for m in rec["conversations"])
    if "instruction" in rec:  # Alpaca
        prompt = rec["instruction"] + (f"\n\n{rec['input']}" if rec.get("input") else "")
        return Conversation.from_pairs(prompt, rec["output"])
    if "prompt" in rec:
        return Conversation.from_pairs(rec["prompt"], rec["completion"])
    raise DataError("unknown record format (expected messages, conversations, instruction/output or "
                    "prompt/completion)", field="<record>", reason="unknown_format")


def _iter_files(paths: Sequence[str]) -> Iterator[Path]:
    for p in map(Path, paths):
        if p.is_dir():
            yield from sorted(x for x in p.rglob("*") if x.suffix in (".json", ".jsonl"))
        elif p.is_file():
            yield p
        else:
            raise InstructkitError(f"data.paths: {p} does not exist")


def read_simple(paths: Sequence[str], on_error: str) -> tuple[list[Conversation], Counter]:
    convs, skipped = [], Counter()
    for f in _iter_files(paths):
        lines = f.read_text().splitlines()
        if f.suffix == ".json":
            items = [(None, x) for x in json.loads("\n".join(lines))]
        else:
            items = [(i + 1, ln) for i, ln in enumerate(lines) if ln.strip()]
        for line, item in items:
            try:
                rec = json.loads(item) if isinstance(item, str) else item
                conv = _record_to_conv(rec).validate()
                conv.meta.update(source=str(f), line=line)
                convs.append(conv)
            except (DataError, KeyError, json.JSONDecodeError) as e:
                err = e.at(str(f), line) if isinstance(e, DataError) else DataError(
                    f"{type(e).__name__}: {e}", path=str(f), line=line, reason="invalid_record")
                if on_error == "raise":
                    raise err from None
                skipped[err.reason] += 1
    return convs, skipped


def _call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call a data-stage function with the keyword arguments it accepts."""
    params = inspect.signature(fn).parameters
    if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
        kwargs = {k: v for k, v in kwargs.items() if k in params}
    return fn(*args, **kwargs)


def load_records(paths: Sequence[str], tokenizer: Any, *, template: str | None, max_length: int, fmt: str,
                 on_error: str, limit: int | None, **prepare_kw: Any) -> tuple[list[dict], dict[str, Any]]:
    """``prepare_kw`` (num_proc, cache_dir, ...) go to the data stage's prepare_dataset when it takes them."""
    if not paths:
        raise InstructkitError("data.paths is empty: name the training files in the recipe (or pass examples=)")
    kw = dict(template=template, max_length=max_length, format=fmt, on_error=on_error, limit=limit, **prepare_kw)
    try:
        prepare = importlib.import_module("instructkit.data.prepare")
    except ImportError:
        prepare = None
    if prepare is not None and hasattr(prepare, "prepare_dataset"):
        ds, report = _call(prepare.prepare_dataset, list(paths), tokenizer, **kw)
        # whole columns at once: row-by-row access of a datasets.Dataset is slow
        records = [{"input_ids": i, "labels": l} for i, l in zip(ds["input_ids"], ds["labels"])]
        rep = report.to_dict() if hasattr(report, "to_dict") else getattr(report, "__dict__", {"report": str(report)})
        return records[:limit] if limit else records, {"source": "instructkit.data.prepare", **rep}
    try:
        readers = importlib.import_module("instructkit.data.readers")
        read = getattr(readers, "read_conversations")
    except (ImportError, AttributeError):
        read = None
    if read is not None:
        convs, skipped = [], Counter()
        for f in _iter_files(paths):
            convs.extend(_call(read, str(f), format=fmt, on_error=on_error))
    else:
        convs, skipped = read_simple(paths, on_error)
    if limit:
        convs = convs[:limit]
    records, render_skips = render_conversations(convs, tokenizer, template, max_length, on_error)
    skipped.update(render_skips)
    return records, {"source": "reader" if read else "train.data.read_simple", "conversations": len(convs),
                     "examples": len(records), "skipped": dict(skipped)}


def split(records: list[dict], val_fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    if val_fraction <= 0 or len(records) < 2:
        return records, []
    idx = list(range(len(records)))
    random.Random(seed).shuffle(idx)
    n_val = max(1, int(round(len(records) * val_fraction)))
    val = set(idx[:n_val])
    return [r for i, r in enumerate(records) if i not in val], [records[i] for i in sorted(val)]
