"""Prompts for sampling (preference pairs, win rates, RL rollouts): one reader for every prompt file shape."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Iterator

from instructkit.errors import DataError


def _prompt_text(rec: Any) -> str:
    if not isinstance(rec, dict):
        raise DataError("record is not an object", reason="wrong_type")
    if isinstance(rec.get("prompt"), str):
        return rec["prompt"]
    for key in ("prompt", "messages"):
        if isinstance(rec.get(key), list) and rec[key] and isinstance(rec[key][-1], dict):
            return str(rec[key][-1].get("content", ""))
    if isinstance(rec.get("turns"), list) and rec["turns"]:
        return str(rec["turns"][0])
    if isinstance(rec.get("instruction"), str):
        inp = rec.get("input")
        if inp is None and isinstance(rec.get("instances"), list) and rec["instances"]:
            inp = rec["instances"][0].get("input")
        return rec["instruction"] + (f"\n\n{inp}" if inp else "")
    raise DataError("no prompt (expected prompt, messages, instruction or turns)", field="prompt",
                    reason="missing_field")


def iter_prompts(paths: Any, skipped: Counter) -> Iterator[tuple[Path, Any, dict, str]]:
    """``(file, line, record, prompt text)`` of every usable record; the others are counted in ``skipped``
    by reason (each reported, none silent)."""
    from instructkit.data.readers import expand_paths, iter_records

    for f in expand_paths(paths):
        for n, rec in iter_records(f):
            try:
                if isinstance(rec, DataError):
                    raise rec
                text = _prompt_text(rec).strip()
                if not text:
                    raise DataError("empty prompt", field="prompt", reason="empty_prompt")
            except DataError as e:
                skipped[e.reason] += 1
                continue
            yield Path(f), n, rec, text


def read_prompts(path: str, limit: int | None = None) -> tuple[list[tuple[str, str]], Counter]:
    """``[(id, prompt text)]`` and the count of records skipped by reason."""
    out: list[tuple[str, str]] = []
    skipped: Counter = Counter()
    for f, n, rec, text in iter_prompts(path, skipped):
        rid = rec.get("id") if isinstance(rec.get("id"), (str, int)) else None
        out.append((str(rid if rid is not None else f"{f.stem}:{n}"), text))
        if limit and len(out) >= limit:
            break
    return out, skipped
