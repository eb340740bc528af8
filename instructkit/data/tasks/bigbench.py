"""BIG-bench multiple-choice tasks (``task.json``) as tasks of the task system.

T0 (Sanh et al. 2022) evaluates zero-shot on BIG-bench tasks that its training mixture does not
contain. The user points at a folder of BIG-bench tasks (e.g. ``bigbench/benchmark_tasks`` from the
``bigbench`` sdist on PyPI: ``pip download --no-deps --no-binary :all: bigbench``); the package itself
is never imported. :func:`prepare_bigbench` turns chosen tasks into a task YAML + JSONL splits each, so
the usual machinery (``load_task``, evaluation, mixtures for an oracle) serves them unchanged.

Rendering follows BIG-bench's own zero-shot format (``task_prefix``, ``example_input_prefix``, the
input, the choices appended when ``append_choices_to_input``, ``example_output_prefix``); the answer is
the choice with the highest ``target_scores`` value. Choices are shuffled per example (seeded by the
example's content): several tasks list the correct choice first. Splits are disjoint by construction
(examples ordered by a hash of their input; the first ``eval_n`` are the evaluation split).
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from instructkit.errors import ConfigError, DataError

DEFAULTS = {"task_prefix": "", "example_input_prefix": "\nQ: ", "example_output_prefix": "\nA: ",
            "choice_prefix": "\n  choice: ", "append_choices_to_input": True}
#: T0's held-out BIG-bench tasks that are multiple choice (Sanh et al. 2022, appendix); subtasks as parent/sub
T0_HELD_OUT = ["code_line_description", "conceptual_combinations", "hindu_knowledge", "known_unknowns",
               "language_identification", "logic_grid_puzzle", "logical_deduction", "misconceptions",
               "movie_dialog_same_or_different", "novel_concepts", "strategyqa", "syllogisms",
               "vitaminc_fact_verification", "winowhy"]
SEP = "|||"


@dataclass
class BigBenchTask:
    name: str                       # "strategyqa" or "logical_deduction/three_objects"
    path: str
    description: str
    keywords: list[str]
    rows: list[dict]                # {"prompt", "choices", "label", "input"}
    skipped: Counter = field(default_factory=Counter)

    @property
    def id(self) -> str:
        return "bb_" + self.name.replace("/", "_")


def find_tasks(folder: str | Path) -> dict[str, Path]:
    """``name -> task.json`` for every task under ``folder`` (subtasks named ``parent/sub``)."""
    root = Path(folder)
    if not root.is_dir():
        raise ConfigError(f"BIG-bench folder not found: {root}")
    if (root / "bigbench" / "benchmark_tasks").is_dir():  # the unpacked sdist
        root = root / "bigbench" / "benchmark_tasks"
    out = {}
    for p in sorted(root.rglob("task.json")):
        rel = p.parent.relative_to(root).as_posix()
        out[rel if rel != "." else p.parent.name] = p
    return out


def _load_json(path: Path) -> dict:
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"invalid JSON ({e.msg})", path=str(path), line=e.lineno, reason="invalid_json") from None
    if not isinstance(d, dict):
        raise DataError("a task.json must be an object", path=str(path), reason="not_an_object")
    return d


def _prompt(spec: dict, text: str, choices: list[str]) -> str:
    s = {**DEFAULTS, **{k: spec[k] for k in DEFAULTS if k in spec}}
    body = s["example_input_prefix"] + text
    if s["append_choices_to_input"]:
        body += "".join(s["choice_prefix"] + c for c in choices)
    return (s["task_prefix"] + body + s["example_output_prefix"]).strip()


def read_task(path: str | Path, name: str | None = None) -> BigBenchTask:
    """One multiple-choice ``task.json``; examples without a single best choice are skipped and counted."""
    path = Path(path)
    d = _load_json(path)
    name = name or d.get("name") or path.parent.name
    exs = d.get("examples")
    if not isinstance(exs, list) or not exs:
        raise ConfigError(f"{path}: BIG-bench task {name!r} has no 'examples' (a task with subtasks: "
                          f"name one of them, e.g. {name}/<subtask>)")
    rows, skipped, seen = [], Counter(), set()
    for i, ex in enumerate(exs):
        if not isinstance(ex, dict) or not isinstance(ex.get("input"), str):
            raise DataError("example needs a string 'input'", path=str(path), field=f"examples[{i}].input",
                            reason="missing_field")
        ts = ex.get("target_scores")
        if not isinstance(ts, dict) or len(ts) < 2:
            raise DataError(f"task {name!r} is not multiple choice (no target_scores with 2+ choices)",
                            path=str(path), field=f"examples[{i}].target_scores", reason="not_multiple_choice")
        choices = [str(c).strip() for c in ts]
        if any(SEP in c or not c for c in choices) or len(set(choices)) != len(choices):
            skipped["bad_choice_text"] += 1  # empty, repeated or containing the choice separator
            continue
        scores = [float(v) for v in ts.values()]
        best = max(scores)
        if scores.count(best) != 1:
            skipped["no_single_best_choice"] += 1
            continue
        key = (ex["input"], tuple(sorted(choices)))  # one input can carry several questions (logical_deduction)
        if key in seen:
            skipped["duplicate_example"] += 1
            continue
        seen.add(key)
        gold = choices[scores.index(best)]
        rng = random.Random(hashlib.sha1(repr(key).encode()).hexdigest())
        rng.shuffle(choices)
        rows.append({"input": ex["input"], "prompt": _prompt(d, ex["input"], choices), "choices": choices,
                     "label": choices.index(gold)})
    return BigBenchTask(name=name, path=str(path), description=str(d.get("description", "")),
                        keywords=list(d.get("keywords", [])), rows=rows, skipped=skipped)


def split_rows(rows: list[dict], eval_n: int) -> tuple[list[dict], list[dict]]:
    """(train, validation): examples ordered by a hash of their input (so examples sharing an input stay
    in one split); at most half of them go to validation."""
    order = sorted(rows, key=lambda r: hashlib.sha1(r["input"].encode()).hexdigest())
    n_eval = min(eval_n, (len(order) + 1) // 2)
    return order[n_eval:], order[:n_eval]


def write_task(task: BigBenchTask, out: str | Path, *, eval_n: int = 300, train_n: int | None = None) -> Path:
    """Write ``<id>.yaml`` + ``<id>.{train,validation}.jsonl`` under ``out``; returns the YAML path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    train, val = split_rows(task.rows, eval_n)
    train = train[:train_n] if train_n is not None else train
    for split, rows in (("train", train), ("validation", val)):
        with (out / f"{task.id}.{split}.jsonl").open("w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
    spec = {"id": task.id, "cluster": task.id, "metric": "accuracy",
            "description": f"BIG-bench {task.name}: {task.description} ({len(val)} eval / {len(train)} train "
                           f"examples; skipped {dict(task.skipped) or 'none'})",
            "source": {"files": {"train": f"{task.id}.train.jsonl", "validation": f"{task.id}.validation.jsonl"}},
            "answer_choices": "{{ choices | join(' ||| ') }}",
            "templates": [{"id": "bigbench", "input": "{{prompt}}", "target": "{{answer_choices[label]}}"}]}
    p = out / f"{task.id}.yaml"
    p.write_text(f"# generated from {task.path} by instructkit.data.tasks.bigbench\n"
                 + yaml.safe_dump(spec, sort_keys=False, allow_unicode=True))
    return p


def prepare_bigbench(folder: str | Path, names: list[str], out: str | Path, *, eval_n: int = 300,
                     train_n: int | None = None) -> list[Path]:
    """Task YAML files for ``names`` (BIG-bench task or ``parent/sub`` names) found under ``folder``."""
    found = find_tasks(folder)
    missing = [n for n in names if n not in found]
    if missing:
        raise ConfigError(f"{folder}: no BIG-bench task(s) {missing} (a task.json under <name>/ or <name>/<sub>/)")
    return [write_task(read_task(found[n], n), out, eval_n=eval_n, train_n=train_n) for n in names]
