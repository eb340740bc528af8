"""Evaluation sets from tasks of the task system, with the controls the held-out report needs.

* **Stratified sampling**: ``limit`` rows drawn with ``seed`` so every gold class has exactly the same
  count (:func:`~instructkit.eval.datasets.sample_rows`); the sample's majority baseline is then 1/k.
* **Contrast twins**: a built-in generator that can flip its deciding slot (suite/twins.py) gives each
  drawn row a twin rendered with the same template; twins are scored for "both twins right" only.
  A twin that is a row of the task's training split is dropped (counted): an oracle may train on it.
* **Calibration prompts**: each classification item also carries the template rendered with a
  content-free input (every text field the answer choices do not use replaced by e.g. "N/A") and, when
  the task declares its deciding ``slot``, the prompt with that slot masked.
* **Format parity**: ``options`` is the share of items rendered with an OPTIONS list (training's
  ``options_prob``), decided per row by a seeded coin; each item records which it got.
* **Guard**: the eval split is never the training split (a task with only a training file evaluates on
  the share carved out of it, see data/tasks/task.py; its note is in ``EvalSet.sampling``).
"""

from __future__ import annotations

import random
import re
from collections import Counter
from typing import Any

from instructkit.data.tasks.answers import AnswerSpec
from instructkit.data.tasks.formats import Format, TaskExample, render_row, row_key
from instructkit.errors import DataError, InstructkitError
from instructkit.eval.datasets import EvalItem, EvalSet, sample_rows

CONTENT_FREE = ("N/A",)


def content_free_row(tpl: Any, row: dict, text: str) -> dict:
    """``row`` with every string field the answer choices do not read replaced by ``text``."""
    keep: set[str] = set()
    if isinstance(tpl.answer_choices, str):
        from jinja2 import meta
        keep = meta.find_undeclared_variables(tpl._compile(tpl.answer_choices).environment.parse(tpl.answer_choices))
    return {k: (text if isinstance(v, str) and k not in keep else v) for k, v in row.items()}


def masked_row(row: dict, slot: dict) -> dict:
    """``row`` with the deciding slot masked: the field itself and its whole-word occurrences elsewhere."""
    f, mask = slot["field"], slot.get("mask", "___")
    val = row.get(f)
    if not isinstance(val, str) or not val:
        return dict(row, **{f: mask})
    pat = re.compile(rf"(?<!\w){re.escape(val)}(?!\w)")
    return {k: (mask if k == f else pat.sub(mask, v) if isinstance(v, str) else v) for k, v in row.items()}


def _row_class(task: Any, tpls: list, row: dict) -> Any:
    """The row's gold class: the index of its target among the first template's choices (None: generative)."""
    _, target, choices = tpls[0].render(row)
    return choices.index(target) if choices and target in choices else None


def _eval_split(task: Any, split: str | None) -> str:
    split = split or task.eval_split
    if split not in task.splits:  # e.g. the default "validation" for a task whose eval split is "test"
        split = task.eval_split
    if split == task.train_split:
        raise InstructkitError(f"task {task.id}: refusing to evaluate on its training split {split!r} (an oracle "
                               f"trains on those rows); its eval split is {task.eval_split!r}")
    return split


def load_task_set(ref: str, fmt: str = "zero_shot", k: int = 3, split: str | None = None, seed: int = 0,
                  limit: int | None = None, templates: str = "all", *, stratify: bool = True, twins: bool = True,
                  calibrate: bool = True, options: float = 0.0, content_free: tuple[str, ...] = CONTENT_FREE) -> EvalSet:
    """A task of the task system: ``limit`` distinct rows (stratified by gold class, seeded), each rendered
    with every template (``templates="all"``) or one template per row spread evenly ("one"); see the
    module docstring for twins, calibration prompts and ``options``."""
    from instructkit.data.tasks import load_task
    task = load_task(ref)
    split = _eval_split(task, split)
    f = Format.parse(fmt)
    if f.cot and not task.has_rationale:
        raise ValueError(f"task {task.id} has no rationales; {fmt} needs one")
    tpls = [t for t in task.templates if not t.inverted]
    rows = task.load_split(split)
    sampling: dict[str, Any] = {"split": split}
    if task.split_note:
        sampling["split_note"] = task.split_note
    index = list(range(len(rows)))
    if limit is not None and limit < len(rows):
        classes = [_row_class(task, tpls, r) for r in rows] if stratify else None
        index, note = sample_rows(classes if classes and None not in classes else None, limit, seed,
                                  f"{task.id}:{split}")
        sampling.update(note)
    gen = (task.source or {}).get("builtin")
    pool = task.load_split(task.train_split) if (f.few_shot or (twins and gen)) else []
    pool_keys = [row_key(r) for r in pool]
    train_keys, dropped = set(pool_keys), Counter()
    tpl_rng, rng = random.Random(f"{task.id}:{split}:{seed}"), random.Random(f"{task.id}:{split}:{fmt}:{seed}")
    deck: list = []
    exs: list[TaskExample] = []
    for i in index:
        row = rows[i]
        if templates == "one":
            if not deck:
                deck = list(tpls)
                tpl_rng.shuffle(deck)
            chosen = [deck.pop()]
        else:
            chosen = tpls
        use_opts = options > 0 and random.Random(f"{task.id}:{split}:{i}:options:{seed}").random() < options
        tw = None
        if twins and gen and not f.cot:
            from instructkit.data.tasks.suite.twins import twin
            tw = twin(gen, row)
            if tw is not None and row_key(tw) in train_keys:
                dropped["twin_in_training_split"] += 1
                tw = None
        for tpl in chosen:
            def one(r: dict, **meta: Any) -> TaskExample:
                prompt, target = render_row(task, tpl, r, fmt, use_opts, rng, pool, k, pool_keys)
                _, answer, choices = tpl.render(r)
                m = {"row": i, "answer": answer, "split": split, "options_block": use_opts, **meta}
                if calibrate and choices and not f.cot:
                    m["cf_prompts"] = [render_row(task, tpl, content_free_row(tpl, r, t), fmt, use_opts, rng, pool,
                                                  k, pool_keys)[0] for t in content_free]
                    if task.slot:
                        m["mask_prompt"] = render_row(task, tpl, masked_row(r, task.slot), fmt, use_opts, rng,
                                                      pool, k, pool_keys)[0]
                return TaskExample(task.id, tpl.id, task.cluster, prompt, target, choices, task.metric, fmt, meta=m)
            pair = f"{task.id}:{split}:{i}:{tpl.id}" if tw is not None else None
            exs.append(one(row, pair=pair))
            if tw is not None:
                exs.append(one(tw, pair=pair, twin=True))
    if twins and gen:
        sampling["twins"] = sum(1 for e in exs if e.meta.get("twin"))
    es = examples_to_set(task.id, exs, fmt, task.cluster, task.answer)
    es.dropped.update(dropped)
    es.sampling = sampling
    return es


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
        ids = dict(example_id=f"{name}:{meta.get('split', '')}:{row}" + ("~twin" if meta.get("twin") else ""),
                   template=getattr(ex, "template_id", None), pair=meta.get("pair"), twin=bool(meta.get("twin")),
                   options_block=meta.get("options_block"))
        if choices and not cot:
            tgt = target.strip()
            stripped = [c.strip() for c in choices]
            if tgt not in stripped:
                raise DataError(f"target {tgt!r} is not one of the answer choices {stripped}", path=name,
                                line=i + 1, field="target", reason="target_not_in_choices")
            sep = "" if ex.prompt.endswith((" ", "\n")) else " "
            items.append(EvalItem(name, i, ex.prompt, target, [sep + c.strip() for c in choices],
                                  stripped.index(tgt), cluster=cluster, cf_prompts=meta.get("cf_prompts"),
                                  mask_prompt=meta.get("mask_prompt"), **ids))
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


