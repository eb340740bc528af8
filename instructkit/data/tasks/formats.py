"""Flan 2022 formats: zero-shot / few-shot, with or without chain-of-thought, with or without options.

Each rendered example is a :class:`TaskExample`; ``.to_conversation()`` makes it a training
conversation (user = prompt, assistant = target). For evaluation, classification examples carry
``answer_choices`` and ``target`` is always one of them (rank classification by log-likelihood).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from instructkit.chat.conversation import Conversation
from instructkit.data.tasks.task import Task
from instructkit.data.tasks.template import Template

FORMATS = ("zero_shot", "few_shot", "zero_shot_cot", "few_shot_cot")
COT_TRIGGER = "Let's think step by step."
EXEMPLAR_SEP = "\n\n"


@dataclass(frozen=True)
class Format:
    """A prompt format as a value: zero- or few-shot, direct or chain-of-thought (Flan 2022's four).

    ``Format.parse("few_shot_cot").few_shot`` replaces decoding the name with ``startswith``/``endswith``."""

    name: str
    few_shot: bool
    cot: bool

    @classmethod
    def parse(cls, name: "str | Format") -> "Format":
        if isinstance(name, Format):
            return name
        if name not in FORMATS:
            raise ValueError(f"format {name!r} is not one of {', '.join(FORMATS)}")
        return cls(name, few_shot=name.startswith("few_shot"), cot=name.endswith("_cot"))

    def __str__(self) -> str:
        return self.name


@dataclass
class TaskExample:
    task_id: str
    template_id: str
    cluster: str
    prompt: str
    target: str
    answer_choices: list[str] | None
    metric: str
    fmt: str
    meta: dict[str, Any] = field(default_factory=dict)

    def to_conversation(self) -> Conversation:
        return Conversation.from_pairs(self.prompt, self.target, task=self.task_id, template=self.template_id,
                                       cluster=self.cluster, fmt=self.fmt)


def options_block(choices: list[str]) -> str:
    return "OPTIONS:\n" + "\n".join(f"- {c}" for c in choices)


def cot_target(rationale: str, answer: str) -> str:
    return f"{rationale.strip()} So the answer is {answer}."


def _render_one(task: Task, tpl: Template, row: dict, cot: bool, options: bool) -> tuple[str, str, list[str] | None, str]:
    """(prompt, target, choices, bare answer); ``target`` carries the rationale when ``cot``."""
    prompt, target, choices = tpl.render(row)
    if options and choices and not tpl.choices_in_prompt:
        prompt = f"{prompt}\n\n{options_block(choices)}"
    answer = target
    if cot and task.has_rationale and not tpl.inverted:
        target = cot_target(str(row[task.rationale]), target)
    return prompt, target, choices, answer


def render_row(task: Task, tpl: Template, row: dict, fmt: str, options: bool, rng: random.Random,
               pool: list[dict], k: int = 3, pool_keys: list[str] | None = None) -> tuple[str, str]:
    """One (prompt, target) in format ``fmt``; few-shot exemplars drawn from ``pool`` (not ``row``)."""
    f = Format.parse(fmt)
    cot = f.cot
    prompt, target, _, _ = _render_one(task, tpl, row, cot, options)
    if f.few_shot:
        prompt = _with_shots(task, tpl, row, prompt, cot, options, rng, pool,
                             pool_keys if pool_keys is not None else [row_key(r) for r in pool], k)
    elif cot:
        prompt = f"{prompt}\n{COT_TRIGGER}"
    return prompt, target


def row_key(row: dict) -> str:
    return repr(sorted((k, str(v)) for k, v in row.items()))


def _with_shots(task: Task, tpl: Template, row: dict, prompt: str, cot: bool, options: bool,
                rng: random.Random, pool: list[dict], pool_keys: list[str], k: int) -> str:
    me = row_key(row)
    shots: list[str] = []
    used: set[int] = set()
    for _ in range(50 * k + 100):
        if len(shots) == k:
            break
        j = rng.randrange(len(pool))
        if j in used or pool_keys[j] == me:  # by content: a duplicate of the row elsewhere is excluded too
            continue
        p, t, _, _ = _render_one(task, tpl, pool[j], cot, options)
        if p == prompt:  # same rendered question under another row would reveal the answer
            continue
        used.add(j)
        shots.append(f"{p}\n{t}")
    else:
        raise ValueError(f"task {task.id}: not enough distinct training rows for {k} exemplars")
    return EXEMPLAR_SEP.join(shots + [prompt])


def render_examples(task: Task, split: str, fmt: str = "zero_shot", k: int = 3, options: bool = True,
                    seed: int = 0, limit: int | None = None, templates: str = "all",
                    inverted: bool | None = None, rows: list[dict] | None = None,
                    sample: int | None = None) -> list[TaskExample]:
    """Render ``split`` of ``task`` in format ``fmt``.

    ``templates="all"``: one example per (row, template) - the FLAN training view; ``"one"``: one
    template drawn per row (seeded); ``"spread"``: one template per row, dealt round-robin from seeded
    shuffles so every template is used equally often. ``limit`` keeps the first N rows; ``sample``
    draws N distinct rows (seeded, kept in split order) - how evaluation limits a task without
    taking only the first few examples. ``meta["row"]`` is always the row's index in the split. Inverted templates are used only on the training split unless
    ``inverted`` says otherwise (an inverted template's target is not the task's answer). Few-shot
    exemplars come from the training split, drawn per example with a seeded RNG, and never contain
    the evaluated row itself (compared by content, so a duplicate row in train is excluded too).
    """
    f = Format.parse(fmt)  # ValueError naming the known formats
    fmt, cot = f.name, f.cot
    if cot and not task.has_rationale:
        raise ValueError(f"task {task.id} has no rationales; {fmt} needs one (tasks with rationale: ...)")
    use_inv = (split == task.train_split) if inverted is None else inverted
    tpls = [t for t in task.templates if use_inv or not t.inverted]
    rows = task.load_split(split) if rows is None else rows
    index = list(range(len(rows)))
    if limit is not None:
        index = index[:limit]
    if sample is not None and sample < len(index):
        index = sorted(random.Random(f"{task.id}:{split}:sample:{seed}").sample(index, sample))
    rng = random.Random(f"{task.id}:{split}:{fmt}:{seed}")
    # its own stream: the same row gets the same template in every format (comparable results)
    tpl_rng = random.Random(f"{task.id}:{split}:{seed}")
    pool: list[dict] = []
    pool_keys: list[str] = []
    if f.few_shot:
        pool = task.load_split(task.train_split)
        pool_keys = [row_key(r) for r in pool]
    if templates not in ("all", "one", "spread"):
        raise ValueError(f"templates {templates!r} is not one of all, one, spread")
    deck: list[Template] = []
    out = []
    for i in index:
        row = rows[i]
        if templates == "spread":
            if not deck:
                deck = list(tpls)
                tpl_rng.shuffle(deck)
            chosen = [deck.pop()]
        else:
            chosen = tpls if templates == "all" else [tpl_rng.choice(tpls)]
        for tpl in chosen:
            prompt, target, choices, answer = _render_one(task, tpl, row, cot, options)
            if pool:
                prompt = _with_shots(task, tpl, row, prompt, cot, options, rng, pool, pool_keys, k)
            elif cot:
                prompt = f"{prompt}\n{COT_TRIGGER}"
            out.append(TaskExample(task.id, tpl.id, task.cluster, prompt, target, choices, task.metric, fmt,
                                   meta={"row": i, "answer": answer, "split": split}))
    return out
