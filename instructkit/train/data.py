"""Where training examples come from: files through the data stage's ``prepare_dataset``, or in-memory
examples/conversations rendered here. Either way the engine sees ``{"input_ids": [...], "labels": [...]}``.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any, Sequence

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
    skipped.update({"truncated (kept)": renderer.stats.get("truncated", 0)})
    return out, skipped


def to_records(examples: Sequence[Any], tokenizer: Any, template: str | None, max_length: int | None) -> list[dict]:
    """Accept rendered dicts or :class:`Conversation` objects (rendered here)."""
    if examples and isinstance(examples[0], Conversation):
        return render_conversations(list(examples), tokenizer, template, max_length)[0]
    return [{"input_ids": list(e["input_ids"]), "labels": list(e["labels"])} for e in examples]


def load_records(paths: Sequence[str], tokenizer: Any, *, template: str | None, max_length: int, fmt: str,
                 on_error: str, limit: int | None, keep_source: bool = False,
                 **prepare_kw: Any) -> tuple[list[dict], dict[str, Any]]:
    """Read, render and cache through the data stage; ``prepare_kw`` (num_proc, cache_dir) go to it.
    ``keep_source``: records also carry ``source`` and ``line`` (Muppet reads task ids from there)."""
    from instructkit.data.prepare import prepare_dataset

    if not paths:
        raise InstructkitError("data.paths is empty: name the training files in the recipe (or pass examples=)")
    ds, report = prepare_dataset(list(paths), tokenizer, template=template, max_length=max_length, format=fmt,
                                 on_error=on_error, limit=limit, **prepare_kw)
    # whole columns at once: row-by-row access of a datasets.Dataset is slow
    records = [{"input_ids": i, "labels": l} for i, l in zip(ds["input_ids"], ds["labels"])]
    if keep_source:
        for r, src, line in zip(records, ds["source"], ds["line"]):
            r.update(source=src, line=line)
    return records, {"source": "instructkit.data.prepare", **report.to_dict()}


def split(records: list[dict], val_fraction: float, seed: int) -> tuple[list[dict], list[dict]]:
    if val_fraction <= 0 or len(records) < 2:
        return records, []
    idx = list(range(len(records)))
    random.Random(seed).shuffle(idx)
    n_val = max(1, int(round(len(records) * val_fraction)))
    val = set(idx[:n_val])
    return [r for i, r in enumerate(records) if i not in val], [records[i] for i in sorted(val)]
