"""Read what the LLM judge grades: questions, model answers, reference answers.

Accepted shapes (one JSON object per line), so real files need no conversion:

* questions: MT-Bench ``{question_id, category, turns: [..], reference?: [..]}``, self-instruct
  ``{id, instruction, instances: [{input, output}]}``, or plain ``{id, question|prompt|instruction}``;
* answers (one file per model, or a folder of ``*.jsonl``): MT-Bench ``{question_id, model_id,
  choices: [{turns: [..]}]}``, ``{question_id|id, turns|answer|response|output}``, or self-instruct
  predictions ``{instruction, input, response}`` with no id, matched to the questions by line order
  (the instruction text is checked so a shifted file is an error, not a silent mismatch);
* references: MT-Bench ``reference_answer_*.jsonl`` (same shape as answers).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from instructkit.errors import DataError
from instructkit.jsonl import iter_jsonl

_TEXT_KEYS = ("question", "prompt", "instruction", "text")
_ANSWER_KEYS = ("answer", "response", "output", "completion", "text")


@dataclass
class Question:
    id: str
    turns: list[str]
    category: str = "general"
    #: reference answers per turn (math/reasoning/coding in MT-Bench), or None
    reference: list[str] | None = None
    #: raw instruction text, used to check id-less answer files line by line
    instruction: str | None = None


@dataclass
class AnswerSet:
    """Answers of several models: ``answers[model][question_id] = [turn 1 answer, turn 2 answer, ...]``."""

    answers: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    stats: Counter = field(default_factory=Counter)

    @property
    def models(self) -> list[str]:
        return sorted(self.answers)




def _str_list(x: Any, path: str, line: int, fld: str) -> list[str]:
    if isinstance(x, str):
        return [x]
    if isinstance(x, list) and x and all(isinstance(t, str) for t in x):
        return list(x)
    raise DataError("expected a string or a non-empty list of strings", path=path, line=line, field=fld,
                    reason="wrong_type")


def _question(rec: dict[str, Any], path: str, line: int) -> Question:
    qid = rec.get("question_id", rec.get("id"))
    if qid is None:
        qid = f"line{line}"
    ref = _str_list(rec["reference"], path, line, "reference") if rec.get("reference") else None
    if "turns" in rec:
        return Question(str(qid), _str_list(rec["turns"], path, line, "turns"), rec.get("category") or "general",
                        ref)
    if "instances" in rec and "instruction" in rec:  # self-instruct: instruction + first instance's input
        inst = rec["instances"][0] if rec["instances"] else {}
        inp = (inst.get("input") or "").strip()
        text = rec["instruction"].strip() + (f"\n\n{inp}" if inp else "")
        return Question(str(qid), [text], rec.get("category") or "general", ref, rec["instruction"])
    for k in _TEXT_KEYS:
        if isinstance(rec.get(k), str):
            return Question(str(qid), [rec[k]], rec.get("category") or "general", ref, rec.get("instruction"))
    raise DataError(f"no question text (expected one of turns, instances+instruction, {', '.join(_TEXT_KEYS)})",
                    path=path, line=line, field="turns", reason="missing_field")


def load_questions(path: str | Path, limit: int | None = None) -> list[Question]:
    out: list[Question] = []
    seen: set[str] = set()
    for n, rec in iter_jsonl(path, objects=True):
        q = _question(rec, str(path), n)
        if q.id in seen:
            raise DataError(f"duplicate question id {q.id!r}", path=str(path), line=n, field="question_id",
                            reason="duplicate_id")
        seen.add(q.id)
        out.append(q)
        if limit is not None and len(out) >= limit:
            break
    if not out:
        raise DataError("no questions", path=str(path), reason="empty_file")
    return out


def _answer_turns(rec: dict[str, Any], path: str, line: int) -> list[str]:
    if isinstance(rec.get("choices"), list) and rec["choices"]:
        return _str_list(rec["choices"][0].get("turns"), path, line, "choices[0].turns")
    if "turns" in rec:
        return _str_list(rec["turns"], path, line, "turns")
    for k in _ANSWER_KEYS:
        if isinstance(rec.get(k), str):
            return [rec[k]]
    raise DataError(f"no answer (expected choices[0].turns, turns or one of {', '.join(_ANSWER_KEYS)})",
                    path=path, line=line, field="answer", reason="missing_field")


def _model_name(path: Path, rec: dict[str, Any] | None) -> str:
    if rec is not None:
        for k in ("model_id", "model"):
            if isinstance(rec.get(k), str):
                return rec[k]
    stem = path.stem
    for suffix in ("_predictions", "_answers", "-predictions", "-answers"):
        stem = stem.removesuffix(suffix)
    return stem


def answer_files(specs: Sequence[str | Path]) -> list[Path]:
    """Expand folders into their ``*.jsonl`` files (sorted)."""
    files: list[Path] = []
    for s in specs:
        p = Path(s)
        if p.is_dir():
            found = sorted(p.glob("*.jsonl"))
            if not found:
                raise DataError("folder holds no *.jsonl answer files", path=str(p), reason="empty_folder")
            files += found
        elif p.is_file():
            files.append(p)
        else:
            raise DataError("answers: no such file or folder", path=str(p), reason="missing_file")
    return files


def load_answers(specs: Sequence[str | Path], questions: Sequence[Question]) -> AnswerSet:
    """Answers of every model in ``specs`` to ``questions``; answers to other questions are counted, not kept."""
    wanted = {q.id for q in questions}
    out = AnswerSet()
    for path in answer_files(specs):
        records = list(iter_jsonl(path, objects=True))
        if not records:
            raise DataError("no answers", path=str(path), reason="empty_file")
        has_ids = any("question_id" in r or "id" in r for _, r in records)
        for i, (n, rec) in enumerate(records):
            model = _model_name(path, rec)
            if has_ids:
                qid = rec.get("question_id", rec.get("id"))
                if qid is None:
                    raise DataError("missing question id (other lines have one)", path=str(path), line=n,
                                    field="question_id", reason="missing_field")
                qid = str(qid)
            else:  # id-less predictions (self-instruct): line i answers question i
                if i >= len(questions):
                    out.stats["answers_beyond_questions"] += 1
                    continue
                q = questions[i]
                if q.instruction and isinstance(rec.get("instruction"), str) and \
                        rec["instruction"].strip() != q.instruction.strip():
                    raise DataError(f"line {n} has no id and its instruction differs from question {q.id!r} "
                                    "(answers must be in question order)", path=str(path), line=n,
                                    field="instruction", reason="misaligned")
                qid = q.id
            if qid not in wanted:
                out.stats["answers_to_other_questions"] += 1
                continue
            turns = _answer_turns(rec, str(path), n)
            if not any(t.strip() for t in turns):
                out.stats["empty_answers"] += 1  # kept: an empty answer is graded (and should lose)
            by_q = out.answers.setdefault(model, {})
            if qid in by_q:
                raise DataError(f"second answer of model {model!r} to question {qid!r}", path=str(path), line=n,
                                field="question_id", reason="duplicate_id")
            by_q[qid] = turns
    for model, by_q in out.answers.items():
        missing = len(wanted - set(by_q))
        if missing:
            out.stats[f"missing_answers[{model}]"] = missing
    return out


def load_references(path: str | Path) -> dict[str, list[str]]:
    """MT-Bench reference answers: ``{question_id: [turn 1 reference, turn 2 reference]}``."""
    return {str(rec.get("question_id", rec.get("id"))): _answer_turns(rec, str(path), n)
            for n, rec in iter_jsonl(path, objects=True)}
