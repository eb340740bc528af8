"""Muppet pre-finetuning (Aghajanyan et al. 2021): massive multi-task training with heterogeneous batches
and per-task loss scaling.

* Heterogeneous batches: Muppet found that batches drawn from a single task hurt multi-task training; every
  optimizer step must mix tasks. Here every PACKED ROW holds examples of at least ``min_tasks`` tasks, so
  every micro-batch, and hence every optimizer step, does - whatever order the loop shuffles rows into.
* Loss scaling: a classification task with n classes costs ``log(n)`` per example for a uniform guess, so
  tasks with many classes would dominate. Each trained token of a classification example is weighted by
  ``1 / log(n)``: the summed (weighted) loss of a uniform guess over the choices is then 1.0 in every task.
  Generative examples get ``generative_weight``.

Task ids come from the records' ``meta.task`` (mixtures written by ``instructkit data mix`` / the mix stage
carry it); a record without one belongs to the task named after its file. The number of classes of
(task, template) is the template's answer choices for task-system tasks; for other data (T0 files) it is the
number of distinct targets when that is small (``max_classes``) and every class is seen at least twice;
``n_classes`` overrides per task (0 = generative). The decisions are returned for the run summary.
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

from instructkit.errors import ConfigError
from instructkit.jsonl import iter_jsonl


def _source_meta(path: str) -> dict[int, tuple[str, str, str]]:
    """line -> (task, template, target text) of a JSONL file (1-based lines, as the readers count)."""
    out: dict[int, tuple[str, str, str]] = {}
    p = Path(path)
    for n, rec in iter_jsonl(p):
        meta = rec.get("meta") or {} if isinstance(rec, dict) else {}
        msgs = rec.get("messages") or [] if isinstance(rec, dict) else []
        target = next((m.get("content", "") for m in reversed(msgs) if m.get("role") == "assistant"),
                      str(rec.get("completion", rec.get("output", ""))) if isinstance(rec, dict) else "")
        out[n] = (str(meta.get("task") or p.stem), str(meta.get("template") or ""), target)
    return out


def tag_records(records: list[dict], sources: Sequence[str], lines: Sequence[int]) -> None:
    """Add ``task``, ``template`` and ``target`` to each record from its source file's line (in place)."""
    cache: dict[str, dict[int, tuple[str, str, str]]] = {}
    for r, src, line in zip(records, sources, lines):
        if src not in cache:
            cache[src] = _source_meta(src) if src and Path(src).is_file() and src.endswith(".jsonl") else {}
        task, tpl, target = cache[src].get(int(line), (Path(src).stem or "data", "", ""))
        r.update(task=task, template=tpl, target=target)


@lru_cache(maxsize=None)
def _task_templates(task_id: str) -> tuple[dict[str, Any], dict] | None:
    """(template id -> Template, one training row) of a task-system task; None when it is not one of ours.
    Loaded once per task: a mixture has many (task, template) pairs."""
    from instructkit.data.tasks import load_task
    from instructkit.errors import InstructkitError

    try:
        task = load_task(task_id)
        rows = task.load_split(task.train_split)
    except (InstructkitError, OSError, ValueError):
        return None
    return {t.id: t for t in task.templates}, (rows[0] if rows else {})


def _template_classes(task_id: str, template_id: str) -> int | None:
    """Choices of a task-system template (0 = generative/inverted); None when the task is not one of ours."""
    info = _task_templates(task_id)
    if info is None:
        return None
    tpl = info[0].get(template_id)
    if tpl is None or tpl.inverted or tpl.answer_choices is None:
        return 0
    try:  # choices may depend on the row (e.g. the two names of a coreference item): use a real row
        return len(dict.fromkeys(tpl.choices(info[1])))
    except Exception:  # a template that cannot render its choices here: count them from the data instead
        return None


def class_counts(records: Sequence[dict], n_classes: dict[str, int], max_classes: int) -> dict[str, int]:
    """``"task/template" -> n`` (0 = generative) for every (task, template) of the records."""
    targets: dict[tuple[str, str], Counter] = defaultdict(Counter)
    for r in records:
        targets[(r["task"], r["template"])][r["target"]] += 1
    out: dict[str, int] = {}
    for (task, tpl), seen in sorted(targets.items()):
        if task in n_classes:
            n = n_classes[task]
        else:
            n = _template_classes(task, tpl)
            if n is None:  # data-driven: few distinct targets, each seen at least twice
                n = len(seen) if 2 <= len(seen) <= max_classes and min(seen.values()) >= 2 else 0
        out[f"{task}/{tpl}"] = n
    return out


def weight_for(n: int, generative_weight: float) -> float:
    return 1.0 / math.log(n) if n >= 2 else generative_weight


def apply_weights(records: list[dict], classes: dict[str, int], generative_weight: float) -> None:
    for r in records:
        r["weight"] = weight_for(classes.get(f"{r['task']}/{r['template']}", 0), generative_weight)


def hetero_groups(tasks: Sequence[str], lengths: Sequence[int], capacity: int, k: int,
                  seed: int = 0) -> tuple[list[list[int]], dict[str, int]]:
    """Packed rows (lists of example indices) each holding examples of >= ``k`` distinct tasks.

    Every row is seeded with the next example of the k tasks with the most examples left, then filled
    round-robin over all tasks while examples fit. When fewer than k tasks have examples left, their rows are
    topped up with repeats of other tasks' examples (counted in ``repeated``): nothing is dropped.
    """
    queues: dict[str, list[int]] = defaultdict(list)
    for i, t in enumerate(tasks):
        if lengths[i] > capacity:
            raise ConfigError(f"an example of task {t!r} has {lengths[i]} tokens, more than train.pack_tokens="
                              f"{capacity}")
        queues[t].append(i)
    if len(queues) < k:
        raise ConfigError(f"train.muppet.min_tasks={k} but the data has {len(queues)} task(s): {sorted(queues)}")
    rng = random.Random(seed)
    for q in queues.values():
        rng.shuffle(q)
    by_task = {t: list(q) for t, q in queues.items()}
    groups: list[list[int]] = []
    stats = Counter()
    while any(queues.values()):
        live = sorted((t for t in queues if queues[t]), key=lambda t: (-len(queues[t]), t))
        row, used, room = [], set(), capacity
        for t in live[:k]:
            i = queues[t].pop()
            row.append(i), used.add(t)
            room -= lengths[i]
        if room < 0:
            raise ConfigError(f"train.muppet.min_tasks={k}: {k} examples of different tasks do not fit in one row "
                              f"of train.pack_tokens={capacity}; raise pack_tokens or lower min_tasks")
        added = True
        while added:  # fill round-robin, shortest-first queues are not favoured: balanced consumption
            added = False
            for t in live:
                if queues[t] and lengths[queues[t][-1]] <= room:
                    i = queues[t].pop()
                    row.append(i), used.add(t)
                    room -= lengths[i]
                    added = True
        while len(used) < k:  # tail: too few tasks left; repeat an example of another task
            cands = [(t, i) for t in sorted(by_task) if t not in used for i in by_task[t] if lengths[i] <= room]
            if not cands:
                raise ConfigError(f"train.muppet.min_tasks={k}: cannot fill a row with {k} tasks within "
                                  f"train.pack_tokens={capacity}")
            t, i = rng.choice(cands)
            row.append(i), used.add(t)
            room -= lengths[i]
            stats["repeated"] += 1
        groups.append(row)
    stats["rows"] = len(groups)
    return groups, dict(stats)


def muppet_rows(examples: Sequence[Any], packing: bool, pack_tokens: int, k: int,
                seed: int) -> tuple[list[dict], dict]:
    """Rows for the loop (as :func:`packing.make_rows`), heterogeneous; carries task ids and loss weights."""
    from instructkit.train.packing import rows_from_groups

    if not packing and k > 1:
        raise ConfigError(f"train.muppet.min_tasks={k} needs train.packing=true (each packed row mixes tasks)")

    names = sorted({e.task for e in examples})
    groups, stats = hetero_groups([e.task for e in examples], [len(e) for e in examples], pack_tokens, k, seed)
    return rows_from_groups(examples, groups, task_index={t: j for j, t in enumerate(names)}), \
        {**stats, "tasks": len(names), "min_tasks": k}


def prepare_records(records: list[dict], cfg: Any) -> dict[str, Any]:
    """Tag records with task ids (from their source lines) and Muppet loss weights; returns the decisions."""
    if records and "source" not in records[0] and "task" not in records[0]:
        raise ConfigError("train.muppet needs task ids: train from files (a mixture from `instructkit data mix` "
                          "carries meta.task), not from in-memory examples")
    if records and "source" in records[0]:
        tag_records(records, [r["source"] for r in records], [r["line"] for r in records])
    for r in records:
        r.setdefault("template", "")
        r.setdefault("target", "")
    classes = class_counts(records, dict(cfg.n_classes), cfg.max_classes)
    if cfg.scale_classification:
        apply_weights(records, classes, cfg.generative_weight)
    else:
        for r in records:
            r["weight"] = cfg.generative_weight if classes.get(f"{r['task']}/{r['template']}", 0) < 2 else 1.0
    per_task: dict[str, list[int]] = defaultdict(list)
    for key, n in classes.items():
        per_task[key.split("/", 1)[0]].append(n)
    return {"n_classes": {t: sorted(set(ns)) for t, ns in sorted(per_task.items())},
            "classification_tasks": sorted(t for t, ns in per_task.items() if max(ns) >= 2)}
