"""Tasks as data: a YAML file names a source, a field mapping, splits, a cluster, a metric, templates.

``load_task("nli_facts")`` loads a task of the built-in suite (``suite/tasks/*.yaml``);
``load_task("path/to/task.yaml")`` a user task. ``include: other_task`` reuses another task's
templates (re-prefixed with this task's id, so template ids stay unique across tasks).
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import jinja2
import yaml

from instructkit.data.tasks.template import Template
from instructkit.data.tasks.answers import AnswerSpec, parse_answer
from instructkit.jsonl import read_jsonl
from instructkit.errors import ConfigError, DataError

SUITE_DIR = Path(__file__).parent / "suite" / "tasks"
METRICS = ("accuracy", "exact_match", "f1", "rouge_l")
TASK_KEYS = {"id", "cluster", "metric", "description", "source", "fields", "splits", "templates", "include",
             "answer_choices", "rationale", "preprocess", "train_split", "eval_split", "answer", "slot"}
#: a task with only a training file gets this split carved out of it (by content hash), never trained on
DERIVED_SPLIT = "heldout"
DERIVED_SHARE = 10  # percent of the training file's rows
TEMPLATE_KEYS = {"id", "input", "target", "answer_choices", "inverted", "choices_in_prompt", "cot", "name"}


def _gsm8k(row: dict) -> dict:
    # GSM8K: "... <<48/2=24>>24 ...\n#### 72": the rationale is the text before ####, calculator
    # annotations stripped (they are tool calls, not prose), the answer the number after ####.
    sol, _, ans = row["answer"].partition("####")
    rationale = re.sub(r"<<[^>]*>>", "", sol).strip().replace("\n", " ")
    return dict(row, rationale=rationale, answer=ans.strip().replace(",", ""))


PREPROCESS: dict[str, Callable[[dict], dict]] = {"gsm8k": _gsm8k}


@dataclass
class Task:
    id: str
    cluster: str
    metric: str
    templates: list[Template]
    source: dict[str, Any]
    splits: list[str] = field(default_factory=lambda: ["train", "validation"])
    fields: dict[str, str] = field(default_factory=dict)
    rationale: str | None = None
    preprocess: str | None = None
    description: str = ""
    path: str | None = None  # the YAML file (None for suite tasks loaded by id is never the case)
    train_split: str = "train"
    eval_split: str = "validation"
    #: how generated answers are extracted and compared (YAML ``answer: {extract: ..., compare: ...}``);
    #: classification without CoT is scored by rank classification and does not use it
    answer: AnswerSpec = field(default_factory=AnswerSpec)
    #: the deciding slot (YAML ``slot: {field: pronoun, mask: someone}``): masked-slot calibration replaces
    #: the field (and its whole-word occurrences in the other text fields) by ``mask``
    slot: dict[str, str] | None = None
    #: set when the eval split was carved out of the only (training) file: says which rows and why
    split_note: str | None = None

    @property
    def has_rationale(self) -> bool:
        return self.rationale is not None

    @property
    def ref(self) -> str:
        """What :func:`load_task` needs to load this task again (id for the suite, else the path)."""
        return self.id if self.path and Path(self.path).parent == SUITE_DIR else (self.path or self.id)

    def load_split(self, split: str) -> list[dict]:
        if split not in self.splits:
            raise ConfigError(f"task {self.id}: no split {split!r} (has {', '.join(self.splits)})")
        if self.split_note and split in (DERIVED_SPLIT, self.train_split):
            # one training file, split by a content hash: the held-out share is never trained on
            rows = [dict(r) for r in _load_source(self.source, self.train_split, self.path)
                    if (_bucket(r) < DERIVED_SHARE) == (split == DERIVED_SPLIT)]
        else:
            rows = [dict(r) for r in _load_source(self.source, split, self.path)]
        out = []
        for r in rows:
            for new, old in self.fields.items():
                if old not in r:
                    raise DataError(f"task {self.id}: source row has no field {old!r} (fields: {sorted(r)})",
                                    path=self.path, field=f"fields.{new}", reason="missing_field")
                r[new] = r[old]
            if self.preprocess:
                r = PREPROCESS[self.preprocess](r)
            out.append(r)
        return out


def _bucket(row: dict) -> int:
    import hashlib
    key = repr(sorted((k, str(v)) for k, v in row.items()))
    return int.from_bytes(hashlib.sha1(key.encode()).digest()[:4], "big") % 100


# -- sources -------------------------------------------------------------------------------------
def _read_file(path: Path) -> list[dict]:
    if not path.exists():
        raise DataError("source file not found", path=str(path), reason="missing_file")
    if path.suffix == ".csv":
        with path.open(newline="") as f:
            return list(csv.DictReader(f))
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq
        return pq.read_table(path).to_pylist()
    return read_jsonl(path)


def _load_builtin(src: dict, split: str) -> list[dict]:
    from instructkit.data.tasks.suite.generators import generate
    n = int(src.get(split, 0))
    # each split owns a hash-partition of the row space: train and eval rows are disjoint by construction
    return generate(src["builtin"], n, int(src.get("seed", 0)), split=split)


def hash_seed(seed: int, split: str) -> int:
    return seed * 1000 + {"train": 0, "validation": 1, "test": 2}.get(split, 3)


def _load_disk(src: dict, split: str, base: Path) -> list[dict]:
    from datasets import load_from_disk
    ds = load_from_disk(str(base / src["disk"]))
    return [dict(r) for r in ds[split]]


def _load_hub(src: dict, split: str, base: Path) -> list[dict]:
    import os
    if os.environ.get("HF_DATASETS_OFFLINE") == "1" or os.environ.get("HF_HUB_OFFLINE") == "1":
        raise ConfigError(f"source.hub {src['hub']!r}: offline (HF_HUB_OFFLINE/HF_DATASETS_OFFLINE set); "
                          "save it with datasets.save_to_disk and use source.disk instead")
    from datasets import load_dataset
    return [dict(r) for r in load_dataset(src["hub"], src.get("subset"), split=split)]


def _load_files(src: dict, split: str, base: Path) -> list[dict]:
    files = src["files"]
    if split not in files:
        raise ConfigError(f"source.files has no split {split!r}")
    return _read_file(base / files[split])


SOURCES = {"builtin": lambda s, sp, b: _load_builtin(s, sp), "files": _load_files, "disk": _load_disk,
           "hub": _load_hub}


def _load_source(src: dict, split: str, path: str | None) -> list[dict]:
    base = Path(path).parent if path else Path(".")
    kind = next(k for k in SOURCES if k in src)
    return SOURCES[kind](src, split, base)


# -- YAML -> Task --------------------------------------------------------------------------------
def _err(path: Path, key: str, msg: str) -> ConfigError:
    return ConfigError(f"{path}: key '{key}': {msg}")


def _parse_template(d: Any, i: int, task_id: str, path: Path, default_choices: Any) -> Template:
    if not isinstance(d, dict):
        raise _err(path, f"templates[{i}]", "must be a mapping")
    unknown = set(d) - TEMPLATE_KEYS
    if unknown:
        raise _err(path, f"templates[{i}].{sorted(unknown)[0]}", "unknown key")
    for k in ("id", "input", "target"):
        if not isinstance(d.get(k), str) or not d[k].strip():
            raise _err(path, f"templates[{i}].{k}", "required (non-empty string)")
    t = Template(id=f"{task_id}/{d['id']}", input=d["input"], target=d["target"],
                 answer_choices=d.get("answer_choices", default_choices),
                 inverted=bool(d.get("inverted", False)), choices_in_prompt=bool(d.get("choices_in_prompt", False)),
                 cot=bool(d.get("cot", False)), name=d.get("name", d["id"]))
    for k in ("input", "target", "answer_choices"):
        try:
            if isinstance(getattr(t, k), str):
                t._compile(getattr(t, k))
        except jinja2.TemplateSyntaxError as e:
            raise _err(path, f"templates[{i}].{k}", f"Jinja syntax error: {e.message}") from None
    return t


@lru_cache(maxsize=None)
def _load_path(path: str) -> Task:
    p = Path(path)
    try:
        d = yaml.safe_load(p.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {e}") from None
    if not isinstance(d, dict):
        raise ConfigError(f"{p}: a task file must be a mapping")
    unknown = set(d) - TASK_KEYS
    if unknown:
        raise _err(p, sorted(unknown)[0], f"unknown key (allowed: {', '.join(sorted(TASK_KEYS))})")
    for k in ("id", "cluster", "source"):
        if k not in d:
            raise _err(p, k, "missing required key")
    metric = d.get("metric", "exact_match")
    if metric not in METRICS:
        raise _err(p, "metric", f"{metric!r} is not one of {', '.join(METRICS)}")
    try:
        answer = parse_answer(d.get("answer"), metric)
    except ValueError as e:
        raise _err(p, "answer", str(e)) from None
    src = d["source"]
    if not isinstance(src, dict) or not any(k in src for k in SOURCES):
        raise _err(p, "source", f"needs one of {', '.join(SOURCES)}")
    if d.get("preprocess") and d["preprocess"] not in PREPROCESS:
        raise _err(p, "preprocess", f"unknown (choices: {', '.join(PREPROCESS)})")
    if "include" in d:
        base = load_task(d["include"])
        templates = [Template(**{**t.__dict__, "id": f"{d['id']}/{t.id.split('/', 1)[1]}", "_cache": {}})
                     for t in base.templates]
    else:
        templates = []
    raw = d.get("templates") or []
    if not isinstance(raw, list):
        raise _err(p, "templates", "must be a list")
    templates += [_parse_template(t, i, d["id"], p, d.get("answer_choices")) for i, t in enumerate(raw)]
    if not templates:
        raise _err(p, "templates", "a task needs at least one template (or include:)")
    ids = [t.id for t in templates]
    dup = {i for i in ids if ids.count(i) > 1}
    if dup:
        raise _err(p, "templates", f"duplicate template ids {sorted(dup)}")
    splits = d.get("splits") or ([k for k in ("train", "validation", "test") if k in src]
                                 if "builtin" in src else list(src.get("files", {})) or ["train", "validation"])
    train_split = d.get("train_split", "train")
    eval_split = d.get("eval_split") or next((s for s in ("validation", "test") if s in splits), splits[-1])
    split_note = None
    if eval_split == train_split:
        if d.get("eval_split"):
            raise _err(p, "eval_split", f"is the training split {train_split!r}: a model would be scored on the "
                                        "rows it trains on (drop eval_split to carve a held-out split from it)")
        # only a training file: evaluate on a deterministic 10% of it that training never sees
        eval_split = DERIVED_SPLIT
        splits = list(splits) + [DERIVED_SPLIT]
        split_note = (f"only a {train_split!r} split: {DERIVED_SHARE}% of its rows (by a content hash) form the "
                      f"eval split {DERIVED_SPLIT!r}, and training uses only the other rows")
    slot = d.get("slot")
    if slot is not None and (not isinstance(slot, dict) or not isinstance(slot.get("field"), str)
                             or set(slot) - {"field", "mask"}):
        raise _err(p, "slot", "must be a mapping {field: NAME, mask: TEXT} (the deciding slot)")
    return Task(id=d["id"], cluster=d["cluster"], metric=metric, templates=templates, source=src,
                splits=splits, fields=d.get("fields") or {}, rationale=d.get("rationale"),
                preprocess=d.get("preprocess"), description=d.get("description", ""), path=str(p.resolve()),
                train_split=train_split, eval_split=eval_split, answer=answer, slot=slot, split_note=split_note)


def load_task(ref: str) -> Task:
    """A task by suite id (``nli_facts``) or by YAML path."""
    p = Path(ref)
    if p.suffix in (".yaml", ".yml"):
        if not p.is_file():
            raise ConfigError(f"task file not found: {ref}")
        return _load_path(str(p.resolve()))
    suite = SUITE_DIR / f"{ref}.yaml"
    if not suite.is_file():
        raise ConfigError(f"unknown task {ref!r}: not a built-in task id "
                          f"({', '.join(t.stem for t in sorted(SUITE_DIR.glob('*.yaml')))}) nor a .yaml path")
    return _load_path(str(suite.resolve()))


def builtin_tasks() -> list[Task]:
    return [load_task(p.stem) for p in sorted(SUITE_DIR.glob("*.yaml"))]


def load_tasks(refs: list[str]) -> list[Task]:
    """Ids, YAML files, folders of YAML files, or ``builtin`` (the whole suite)."""
    out: list[Task] = []
    for r in refs:
        if r == "builtin":
            out += builtin_tasks()
        elif Path(r).is_dir():
            out += [load_task(str(p)) for p in sorted(Path(r).glob("*.y*ml"))]
        else:
            out.append(load_task(r))
    seen: set[str] = set()
    return [t for t in out if not (t.id in seen or seen.add(t.id))]
