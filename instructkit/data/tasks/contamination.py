"""n-gram contamination between a training mixture and evaluation sets (GPT-3 / FLAN style 13-grams)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Iterable

from instructkit.jsonl import read_jsonl

_WS = re.compile(r"\s+")


def tokens(text: str) -> list[str]:
    return _WS.sub(" ", text.lower()).strip().split(" ")


def ngrams(text: str, n: int = 13) -> set[int]:
    t = tokens(text)
    return {hash(tuple(t[i:i + n])) for i in range(len(t) - n + 1)}


def record_text(rec: Any) -> str:
    """All string content of a record: messages, prompt/completion, or any string fields."""
    if isinstance(rec, str):
        return rec
    if isinstance(rec, dict):
        if "messages" in rec:
            return "\n".join(m.get("content", "") for m in rec["messages"])
        return "\n".join(record_text(v) for k, v in rec.items() if k != "meta")
    if isinstance(rec, list):
        return "\n".join(record_text(v) for v in rec)
    return ""


def train_index(records: Iterable[Any], n: int = 13) -> set[int]:
    idx: set[int] = set()
    for r in records:
        idx |= ngrams(record_text(r), n)
    return idx


def eval_texts(ref: str, limit: int | None = None) -> list[str]:
    """Texts of an eval set: a JSONL file, or a task id / task YAML (its eval split rows)."""
    if Path(ref).suffix in (".jsonl", ".json") and Path(ref).is_file():
        rows: list[Any] = read_jsonl(ref)
    else:
        from instructkit.data.tasks import load_task
        t = load_task(ref)
        rows = t.load_split(t.eval_split)
    return [record_text(r) for r in rows[:limit]]


def overlap(index: set[int], texts: list[str], n: int = 13) -> dict[str, Any]:
    hit = sum(1 for t in texts if ngrams(t, n) & index)
    return {"examples": len(texts), "contaminated": hit, "share": hit / len(texts) if texts else 0.0}
