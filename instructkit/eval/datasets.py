"""Evaluation sets from local files, turned into :class:`EvalItem` s the runner scores.

Task references (``--tasks a,b,c``):

* ``mmlu:FILE`` - MMLU-style multiple choice, JSONL or CSV (question, four options, answer letter);
* ``bbh:NAME`` or ``bbh:FILE.json`` - BIG-Bench Hard, with the 3-shot CoT prompts from ``cot-prompts/``;
* ``gsm8k`` or ``gsm8k:FILE.jsonl`` - GSM8K (answer after ``####``; CoT exemplars from train.jsonl);
* anything else - a task of the task system (``instructkit.data.tasks.load_task``).

Bad rows raise :class:`DataError` naming file, line and field; rows dropped on purpose (MMLU rows
whose answer is the header word "answer") are counted in ``EvalSet.dropped``. The benchmark loaders live
in :mod:`.benchmarks`, the task-system sets (stratified sampling, contrast twins, calibration prompts)
in :mod:`.task_sets`; this module holds the item types and the dispatch.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from instructkit.errors import DataError
from instructkit.jsonl import iter_jsonl

from instructkit.data.tasks.answers import COMPARE_OF_METRIC, DEFAULT_EXTRACT, AnswerSpec

LETTERS = "ABCD"
#: GSM8K, numeric BBH targets: math-verify where installed, else the last number (docs/eval.md)
MATH_ANSWER = AnswerSpec("math", "math")
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
    #: calibration prompts (rank classification): the template with a content-free input, one per
    #: content-free string (Zhao et al. 2021), and the prompt with the task's deciding slot masked
    cf_prompts: list[str] | None = None
    mask_prompt: str | None = None
    #: contrast twins: both items of a pair carry the original's example id; the twin is scored for
    #: consistency only (it never enters accuracy, so the stratified sample stays balanced)
    pair: str | None = None
    twin: bool = False
    options_block: bool | None = None      # rendered with an OPTIONS list (format parity with training)

    def __post_init__(self) -> None:
        if not self.example_id:
            self.example_id = f"{self.task}:{self.idx}"

    @property
    def spec(self) -> AnswerSpec:
        if self.answer is not None:
            return self.answer
        if self.answer_kind == "number":
            return MATH_ANSWER
        if self.answer_kind == "letter":
            return LETTER_ANSWER
        compare = COMPARE_OF_METRIC.get(self.metric, "normalized_text")
        return AnswerSpec(DEFAULT_EXTRACT.get(compare, "first_line"), compare)

    @property
    def chance(self) -> float:
        """Accuracy of a uniform random pick (rank classification), 0 for generation; the chance line
        a report prints is the best answer-blind baseline on the evaluated items (eval/controls.py)."""
        return 1.0 / len(self.choices) if self.choices else 0.0


@dataclass
class EvalSet:
    name: str
    items: list[EvalItem]
    fmt: str
    cluster: str | None = None
    dropped: Counter = field(default_factory=Counter)
    #: how the items were drawn (stratified by gold class, twins, derived eval split...), for the report
    sampling: dict = field(default_factory=dict)


def _need(row: dict, key: str, path: Path, line: int) -> Any:
    if not isinstance(row, dict):
        raise DataError("record is not an object", path=str(path), line=line, reason="not_an_object")
    v = row.get(key)
    if v is None or (isinstance(v, str) and v.strip() == "" and key != "target"):
        raise DataError("missing or empty", path=str(path), line=line, field=key, reason="missing_field")
    return v


read_jsonl = iter_jsonl  # (line, record) pairs; the benchmark loaders read their files with it


def sample_rows(classes: list | None, n: int, seed: int, key: str) -> tuple[list[int], dict]:
    """``n`` row indices, seeded; with ``classes`` (each row's gold class) stratified: exactly the same
    number of rows of every class (``n // k``, fewer when a class has fewer rows - then all classes get
    that many), so the majority-class baseline of the sample is 1/k. Returns (sorted indices, note)."""
    import random
    rng = random.Random(f"{key}:sample:{seed}")
    total = len(classes) if classes is not None else None
    if classes is not None:
        by: dict[Any, list[int]] = {}
        for i, c in enumerate(classes):
            by.setdefault(c, []).append(i)
        per = min(n // len(by), min(len(v) for v in by.values())) if by else 0
        if per > 0:
            keep = sorted(i for c in sorted(by, key=str) for i in rng.sample(by[c], per))
            return keep, {"stratified": True, "classes": len(by), "per_class": per, "asked": n, "drawn": len(keep),
                          "pool": total}
    size = total if total is not None else n
    keep = sorted(rng.sample(range(size), min(n, size)))
    return keep, {"stratified": False, "asked": n, "drawn": len(keep), "pool": size}
