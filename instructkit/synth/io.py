"""Reading seeds/instructions, building the teacher, writing Alpaca JSON + messages JSONL."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from instructkit.errors import DataError, InstructkitError


def _records(path: Path) -> list[tuple[int, Any]]:
    """(line, record) pairs of a JSON list or a JSONL file; errors name file and line."""
    if not path.is_file():
        raise InstructkitError(f"{path}: file not found")
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        raise DataError("file is empty", path=str(path), reason="empty")
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"invalid JSON: {e.msg}", path=str(path), line=e.lineno, reason="invalid_json") from None
        return [(i + 1, r) for i, r in enumerate(data)]  # "line" = item number for a JSON list
    out = []
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append((i, json.loads(line)))
        except json.JSONDecodeError as e:
            raise DataError(f"invalid JSON: {e.msg}", path=str(path), line=i, reason="invalid_json") from None
    return out


def load_seed_tasks(path: str | Path) -> list[dict[str, Any]]:
    """Seed tasks as ``{id, instruction, input, output}``: self-instruct JSONL or Alpaca JSON/JSONL."""
    p = Path(path)
    tasks = []
    for line, rec in _records(p):
        if not isinstance(rec, dict):
            raise DataError(f"expected an object, got {type(rec).__name__}", path=str(p), line=line, reason="wrong_type")
        ins = rec.get("instruction")
        if not isinstance(ins, str) or not ins.strip():
            raise DataError("missing or empty 'instruction'", path=str(p), line=line, field="instruction",
                            reason="missing_field")
        if "instances" in rec:  # self-instruct format
            inst = rec["instances"]
            if not isinstance(inst, list) or not inst or not isinstance(inst[0], dict):
                raise DataError("expected a non-empty list of {input, output}", path=str(p), line=line,
                                field="instances", reason="wrong_type")
            inp, out = inst[0].get("input", ""), inst[0].get("output")
            fld = "instances[0].output"
        else:
            inp, out, fld = rec.get("input", ""), rec.get("output"), "output"
        if not isinstance(out, str):
            raise DataError("missing or non-string output", path=str(p), line=line, field=fld, reason="missing_field")
        if not isinstance(inp, str):
            raise DataError("input must be a string", path=str(p), line=line, field="input", reason="wrong_type")
        clf = rec.get("is_classification")
        tasks.append({"id": str(rec.get("id", f"seed_{line}")), "instruction": ins.strip(), "input": inp.strip(),
                      "output": out.strip(), "is_classification": clf if isinstance(clf, bool) else None})
    if not tasks:
        raise DataError("no seed tasks", path=str(p), reason="empty")
    return tasks


def load_instructions(path: str | Path) -> list[dict[str, Any]]:
    """Instructions to evolve/expand: ``{id, instruction}`` from seed/Alpaca/messages/ShareGPT files or text.
    An input (Alpaca ``input``, self-instruct ``instances[0].input``) follows the instruction after a blank
    line, as the training data renders it: "the given pairs" arrive with the pairs."""
    p = Path(path)
    if p.suffix in (".txt", ".md") and p.is_file():
        lines = [x.strip() for x in p.read_text(encoding="utf-8").splitlines()]
        return [{"id": f"line_{i}", "instruction": x} for i, x in enumerate(lines, 1) if x]
    out = []
    for line, rec in _records(p):
        if isinstance(rec, dict) and isinstance(rec.get("messages") or rec.get("conversations"), list):
            turns = rec.get("messages") or rec.get("conversations")
            users = [t for t in turns if isinstance(t, dict) and t.get("role", t.get("from")) in ("user", "human")]
            if not users:
                raise DataError("no user turn", path=str(p), line=line, field="messages", reason="missing_field")
            text = users[0].get("content", users[0].get("value"))
            if not isinstance(text, str):
                raise DataError("user turn has no text", path=str(p), line=line, field="messages", reason="wrong_type")
            out.append({"id": str(rec.get("id", f"line_{line}")), "instruction": text.strip()})
            continue
        if not isinstance(rec, dict) or not isinstance(rec.get("instruction"), str):
            raise DataError("expected 'instruction' (or messages/conversations)", path=str(p), line=line,
                            field="instruction", reason="missing_field")
        inp = rec.get("input")
        if inp is None and "instances" in rec:  # self-instruct: the task's input is its first instance's
            inst = rec["instances"]
            if not isinstance(inst, list) or not inst or not isinstance(inst[0], dict):
                raise DataError("expected a non-empty list of {input, output}", path=str(p), line=line,
                                field="instances", reason="wrong_type")
            inp = inst[0].get("input")
        if inp is not None and not isinstance(inp, str):
            raise DataError("input must be a string", path=str(p), line=line, field="input", reason="wrong_type")
        inp = inp or ""
        text = rec["instruction"].strip() + (f"\n\n{inp.strip()}" if isinstance(inp, str) and inp.strip() else "")
        out.append({"id": str(rec.get("id", f"line_{line}")), "instruction": text})
    if not out:
        raise DataError("no instructions", path=str(p), reason="empty")
    return out


def build_teacher(cfg: Any, out_dir: str | Path, transport: Any = None) -> Any:
    """A :class:`~instructkit.synth.teacher.Teacher` for a ``TeacherConfig``, its cache in ``out_dir``."""
    from instructkit.synth.teacher import Teacher, load_python_teacher

    ref = cfg.model
    if ref.startswith(("http://", "https://")):
        from instructkit.synth.endpoint import AsyncEndpoint
        lm = AsyncEndpoint(ref, cfg.endpoint_model, api_key_env=cfg.api_key_env, concurrency=cfg.concurrency,
                           rpm=cfg.rpm, tpm=cfg.tpm, timeout=cfg.timeout, max_retries=cfg.max_retries,
                           transport=transport)
    elif ref.startswith("py:"):
        lm = load_python_teacher(ref)
    else:
        from instructkit.lm.hf import HFModel
        lm = HFModel(ref, dtype=cfg.dtype, batch_size=cfg.batch_size, progress=False)
    return Teacher(lm, Path(out_dir) / "cache.jsonl", batch_size=cfg.batch_size, progress=cfg.progress,
                   price_in=cfg.price_in, price_out=cfg.price_out)


def write_outputs(out_dir: str | Path, items: list[dict[str, Any]], name: str = "data") -> dict[str, str]:
    """``items`` with ``messages`` (+ optional alpaca fields, provenance) -> JSON/JSONL files."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    with (out / f"{name}.messages.jsonl").open("w", encoding="utf-8") as f:
        for it in items:
            f.write(json.dumps({"id": it["id"], "messages": it["messages"], "meta": it.get("provenance", {})},
                               ensure_ascii=False) + "\n")
    paths["messages"] = str(out / f"{name}.messages.jsonl")
    if items and all("instruction" in it and "output" in it for it in items):
        alpaca = [{"instruction": it["instruction"], "input": it.get("input", ""), "output": it["output"],
                   "id": it["id"], "provenance": it.get("provenance", {})} for it in items]
        (out / f"{name}.alpaca.json").write_text(json.dumps(alpaca, indent=1, ensure_ascii=False), encoding="utf-8")
        paths["alpaca"] = str(out / f"{name}.alpaca.json")
    return paths


def alpaca_messages(instruction: str, inp: str, output: str) -> list[dict[str, str]]:
    user = f"{instruction}\n\n{inp}" if inp.strip() else instruction
    return [{"role": "user", "content": user}, {"role": "assistant", "content": output}]
