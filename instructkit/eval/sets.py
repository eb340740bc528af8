"""``load_eval_set(ref)``: one entry point for every evaluation set - the benchmark loaders (MMLU, BBH,
GSM8K: :mod:`.benchmarks`) and the task system's sets (:mod:`.task_sets`), both built on the item types
of :mod:`.datasets`."""

from __future__ import annotations

from typing import Any, Callable

from instructkit.data.tasks.formats import FORMATS, Format
from instructkit.errors import InstructkitError
from instructkit.eval import benchmarks
from instructkit.eval.datasets import EvalSet, sample_rows
from instructkit.eval.task_sets import load_task_set

LOADERS: dict[str, Callable[..., EvalSet]] = {
    "mmlu": lambda ref, fmt, cfg: benchmarks.load_mmlu(ref, fmt, k=cfg.get("k", 5)),
    "bbh": lambda ref, fmt, cfg: benchmarks.load_bbh(ref, fmt, cfg.get("data_dir")),
    "gsm8k": lambda ref, fmt, cfg: benchmarks.load_gsm8k(ref, fmt, k=cfg.get("k", 8), data_dir=cfg.get("data_dir")),
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
            classes = [it.target_index for it in es.items]
            keep, es.sampling = sample_rows(classes if None not in classes else None, limit, seed, es.name)
            es.items = [es.items[i] for i in keep]
    else:
        es = load_task_set(ref, fmt or "zero_shot", k=cfg.get("k", 3), split=cfg.get("split"), seed=seed,
                           limit=limit, templates=templates,
                           **{k: cfg[k] for k in ("stratify", "twins", "calibrate", "options") if k in cfg})
    return es
