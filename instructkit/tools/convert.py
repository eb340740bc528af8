"""GSM8K calculator annotations -> tool-call conversations (Toolformer's idea, LaMDA's toolset).

GSM8K solutions mark each calculation as ``<<48/2=24>>24``. Each annotation becomes an assistant
turn that says the text so far and calls ``calculator({"expression": "48/2"})``, a ``tool`` turn with
the calculator's answer, and the solution continues in the next assistant turn; the final turn keeps
``#### 72``. The calculator is run on every expression: an annotation it cannot evaluate, or whose
result disagrees with the annotated one, rejects the record (counted by reason, first examples kept),
so the model never learns to read a tool result that contradicts its own text.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

from instructkit.chat.conversation import Conversation, Message, ToolCall
from instructkit.errors import DataError, InstructkitError
from instructkit.jsonl import iter_jsonl
from instructkit.toolset.calculator import CALCULATOR_SCHEMA, CalculatorError, calculate

ANNOTATION = re.compile(r"<<([^<>]*?)=([^<>=]*)>>")


def _same(a: str, b: str) -> bool:
    try:
        x, y = float(a.replace(",", "")), float(b.replace(",", "").rstrip("."))
    except ValueError:
        return a.strip() == b.strip()
    return math.isclose(x, y, rel_tol=1e-6, abs_tol=1e-6)


def gsm8k_conversation(question: str, answer: str, *, strip_annotations_only: bool = False) -> Conversation:
    """One GSM8K record as a tool conversation (or, ``strip_annotations_only``, as plain CoT without tools)."""
    if "####" not in answer:
        raise DataError("answer has no '####' final answer", field="answer", reason="missing_field")
    rationale, final = answer.rsplit("####", 1)
    final = final.strip()
    left = ANNOTATION.sub("", rationale)
    if "<<" in left or ">>" in left:
        raise DataError("malformed calculator annotation (expected <<expression=result>>)", field="answer",
                        reason="malformed_annotation")
    if strip_annotations_only:
        text = ANNOTATION.sub("", rationale).strip()
        return Conversation([Message("user", question), Message("assistant", f"{text}\n#### {final}")])
    msgs, pos, n = [Message("user", question)], 0, 0
    for m in ANNOTATION.finditer(rationale):
        expr, claimed = m.group(1).strip(), m.group(2).strip()
        try:
            result = calculate(expr)
        except CalculatorError as e:
            raise DataError(f"annotation <<{m.group(1)}={m.group(2)}>>: {e}", field="answer",
                            reason="calculator_error") from None
        if not _same(result, claimed):
            raise DataError(f"annotation <<{m.group(1)}={m.group(2)}>>: the calculator says {result}",
                            field="answer", reason="result_mismatch")
        cid = f"call_{n}"
        msgs.append(Message("assistant", rationale[pos:m.start()].strip(),
                            tool_calls=[ToolCall("calculator", {"expression": expr}, cid)]))
        msgs.append(Message("tool", result, name="calculator", tool_call_id=cid))
        pos, n = m.end(), n + 1
    msgs.append(Message("assistant", f"{rationale[pos:].strip()}\n#### {final}".strip()))
    return Conversation(msgs, tools=[CALCULATOR_SCHEMA]).validate()


def iter_gsm8k(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    p = Path(path)
    if not p.is_file():
        raise InstructkitError(f"{p}: no such file (GSM8K JSONL with question/answer)")
    for n, rec in iter_jsonl(p, objects=True):
        for k in ("question", "answer"):
            if not isinstance(rec.get(k), str):
                raise DataError(f"missing or non-string {k!r}", path=str(p), line=n, field=k,
                                reason="missing_field")
        yield n, rec


def convert_gsm8k(src: str | Path, out: str | Path, *, limit: int | None = None, offset: int = 0,
                  tools: bool = True) -> dict[str, Any]:
    """Write OpenAI-format tool conversations to ``out`` (JSONL); returns counts (kept, rejected by reason,
    calls) with the first examples of each rejection."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    counts: Counter = Counter()
    examples: dict[str, list[str]] = {}
    with out.open("w", encoding="utf-8") as f:
        for n, rec in iter_gsm8k(src):
            if n <= offset:
                continue
            if limit is not None and counts["kept"] >= limit:
                break
            counts["read"] += 1
            try:
                conv = gsm8k_conversation(rec["question"], rec["answer"], strip_annotations_only=not tools)
            except DataError as e:
                counts[e.reason] += 1
                examples.setdefault(e.reason, [])
                if len(examples[e.reason]) < 3:
                    examples[e.reason].append(str(e.at(str(src), n)))
                continue
            counts["kept"] += 1
            counts["calls"] += sum(len(m.tool_calls or []) for m in conv.messages)
            d: dict[str, Any] = {"id": f"gsm8k-{n}", "messages": [m.to_openai() for m in conv.messages]}
            if conv.tools:
                d["tools"] = conv.tools
            f.write(json.dumps(d, ensure_ascii=False) + "\n")
    return {"source": str(src), "out": str(out), "counts": dict(counts), "examples": examples}


# -- a retrieval-grounded QA set over a corpus a user would have ---------------------------------------
SURNAMES = ["Moreau", "Okafor", "Lindqvist", "Tanaka", "Silva", "Novak", "Haddad", "Kowalski", "Brennan",
            "Achebe", "Petrov", "Yilmaz", "Castillo", "Nguyen", "Fischer", "Mensah", "Rossi", "Dubois"]
_QUESTIONS = (("city", "Where does {n} live?", "{n} lives in {v}."),
              ("job", "What does {n} work as?", "{n} works as a {v}."),
              ("pet", "What pet does {n} own?", "{n} owns a {v}."))


def build_people_qa(out_dir: str | Path, *, n_people: int = 120, n_train: int = 200, n_test: int = 60,
                    seed: int = 0) -> dict[str, Any]:
    """A people directory (``corpus.jsonl``: one passage per person, the kind of file a user indexes), its
    BM25 index (``index/``), tool conversations that look people up (``train.jsonl``: search call, the
    real search result, a grounded answer) and held-out questions (``test.jsonl``: question, answer).

    Facts are random, so a model cannot know them: without retrieval accuracy is at chance."""
    import random

    from instructkit.data.tasks.suite.generators import CITIES, JOBS, NAMES, PETS
    from instructkit.toolset.retrieval import SEARCH_SCHEMA, BM25Index, Doc, format_hits

    rng = random.Random(seed)
    names = [f"{a} {b}" for a in NAMES for b in SURNAMES]
    if n_people > len(names):
        raise InstructkitError(f"n_people={n_people}: at most {len(names)} distinct names")
    people = [{"name": n, "city": rng.choice(CITIES), "job": rng.choice(JOBS), "pet": rng.choice(PETS)}
              for n in rng.sample(names, n_people)]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    docs = [Doc(f"{p['name']} lives in {p['city']}, works as a {p['job']} and owns a {p['pet']}.", p["name"],
                f"person-{i}") for i, p in enumerate(people)]
    with (out / "corpus.jsonl").open("w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps({"id": d.id, "title": d.title, "text": d.text}) + "\n")
    index = BM25Index.build(docs)
    index.save(out / "index", sources=[str(out / "corpus.jsonl")])
    qs = [(p, k, q, a) for p in people for k, q, a in _QUESTIONS]
    rng.shuffle(qs)
    test, train = qs[:n_test], qs[n_test: n_test + n_train]
    with (out / "train.jsonl").open("w", encoding="utf-8") as f:
        for j, (p, k, q, a) in enumerate(train):
            call = ToolCall("search", {"query": p["name"]}, "call_0")
            conv = Conversation([Message("user", q.format(n=p["name"])),
                                 Message("assistant", "", tool_calls=[call]),
                                 Message("tool", format_hits(index.search(p["name"], 3)), name="search",
                                         tool_call_id="call_0"),
                                 Message("assistant", a.format(n=p["name"], v=p[k]))], tools=[SEARCH_SCHEMA])
            f.write(json.dumps({"id": f"people-{j}", "messages": [m.to_openai() for m in conv.validate().messages],
                                "tools": conv.tools}) + "\n")
    with (out / "test.jsonl").open("w", encoding="utf-8") as f:
        for p, k, q, _a in test:
            f.write(json.dumps({"question": q.format(n=p["name"]), "answer": p[k]}) + "\n")
    return {"corpus": str(out / "corpus.jsonl"), "index": str(out / "index"), "train": str(out / "train.jsonl"),
            "test": str(out / "test.jsonl"), "people": n_people, "n_train": len(train), "n_test": len(test)}
