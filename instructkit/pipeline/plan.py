"""The plan of a recipe: stage order (dependencies first), each stage's config, fingerprint and status.

Nothing here runs a stage. ``fingerprint = sha256(kind, version, the recipe sections the stage reads (or its
own config), its inputs' fingerprints, stamps of the external files it reads)``; a stage's folder is
``RUN/NAME-FP12`` and ``stage.json`` in it marks it finished. Errors name the stage (and its line in the file).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from instructkit.config.base import validate
from instructkit.errors import ConfigError
from instructkit.pipeline.registry import Stage, get
from instructkit.config.recipe import Recipe, StageEntry


@dataclass
class Planned:
    name: str
    kind: str
    spec: Stage
    entry: StageEntry
    cfg: Any
    recipe: Any
    deps: dict[str, tuple[str, str | None]]   # input name -> (stage, key or None)
    fingerprint: str = ""
    parts: dict[str, Any] = field(default_factory=dict)
    folder: Path = Path()
    status: str = "run"       # cached | run | resume | forced
    reason: str = ""


def default_stages(recipe: Recipe) -> dict[str, StageEntry]:
    """The implied chain of a recipe without ``stages:``: mix -> train -> eval -> report."""
    st: dict[str, StageEntry] = {}
    if recipe.mix is not None:
        st["mix"] = StageEntry()
    st["train"] = StageEntry(inputs={"data": "mix.mixture"} if "mix" in st else {})
    if recipe.eval.tasks:
        st["eval"] = StageEntry(inputs={"model": "train.model"})
        st["report"] = StageEntry(inputs={"tuned": "eval"})
    return st


def _ref(stage: str, local: str, ref: str) -> tuple[str, str | None]:
    src, _, key = ref.partition(".")
    return src, (key or None)


def order(stages: dict[str, StageEntry], where: dict[str, str]) -> list[str]:
    """Dependencies first, file order otherwise; a missing stage or a cycle is an error naming the stage."""
    deps: dict[str, list[str]] = {}
    for name, e in stages.items():
        deps[name] = []
        for local, ref in e.inputs.items():
            src, _ = _ref(name, local, ref)
            if src not in stages:
                raise ConfigError(f"{where[name]}: stage {name!r}: input {local!r} refers to {ref!r}, but there is "
                                  f"no stage {src!r} (stages: {', '.join(stages)})")
            if src == name:
                raise ConfigError(f"{where[name]}: stage {name!r}: input {local!r} refers to the stage itself")
            deps[name].append(src)
    done: list[str] = []
    state: dict[str, int] = {}  # 1 = on the DFS path, 2 = placed

    def visit(n: str, path: list[str]) -> None:
        if state.get(n) == 2:
            return
        if state.get(n) == 1:
            cyc = path[path.index(n):] + [n]
            raise ConfigError(f"{where[n]}: stage {n!r} is in a cycle: {' -> '.join(cyc)}")
        state[n] = 1
        for d in deps[n]:
            visit(d, path + [n])
        state[n] = 2
        done.append(n)

    for n in stages:
        visit(n, [])
    return done


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _stage_cfg(recipe: Recipe, name: str, e: StageEntry, spec: Stage, where: str) -> tuple[Any, Any]:
    """(cfg passed to the function, the recipe the context carries)."""
    ctype = spec.config_type()
    if ctype is not None:
        return validate(ctype, dict(e.config), f"{where}: stages.{name}.config"), recipe
    base = recipe.model_dump(mode="json", exclude={"stages"})
    over = validate(Recipe, _merge(base, dict(e.config)), f"{where}: stages.{name}.config")
    return over, over


def _stamp(path: str) -> Any:
    p = Path(path)
    if p.is_file():
        st = p.stat()
        if st.st_size < 8 << 20:
            return hashlib.sha256(p.read_bytes()).hexdigest()
        return [st.st_size, st.st_mtime_ns]
    if p.is_dir():
        return [[str(f.relative_to(p)), f.stat().st_size, f.stat().st_mtime_ns]
                for f in sorted(p.rglob("*")) if f.is_file()]
    return "missing"


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _config_part(p: Planned) -> Any:
    if p.spec.config:
        own = p.cfg.model_dump(mode="json")
        return {"config": own, "recipe": {k: p.recipe.model_dump(mode="json").get(k) for k in p.spec.reads}}
    dump = p.cfg.model_dump(mode="json")
    return {k: dump.get(k) for k in p.spec.reads}


def stage_lines(path: str | Path | None) -> dict[str, int]:
    """Line of each ``stages.NAME`` key in the recipe file (for error messages)."""
    import yaml
    if path is None or not Path(path).is_file():
        return {}
    try:
        root = yaml.compose(Path(path).read_text())
    except yaml.YAMLError:
        return {}
    for k, v in getattr(root, "value", []) if isinstance(root, yaml.MappingNode) else []:
        if k.value == "stages" and isinstance(v, yaml.MappingNode):
            return {kk.value: kk.start_mark.line + 1 for kk, _ in v.value}
    return {}


def plan(recipe: Recipe, source: str | Path | None = None) -> list[Planned]:
    """Resolve kinds, configs, references and fingerprints; nothing runs. Errors name the stage."""
    stages = recipe.stages or default_stages(recipe)
    lines = stage_lines(source) if recipe.stages else {}
    src = str(source) if source else "recipe"
    where = {n: f"{src}:{lines[n]}" if n in lines else src for n in stages}
    names = order(stages, where)
    run_dir = Path(recipe.resolved_output_dir())
    out: dict[str, Planned] = {}
    for n in names:
        e = stages[n]
        kind = e.kind or n
        try:
            spec = get(kind, n)
        except ConfigError as err:
            raise ConfigError(f"{where[n]}: {err}") from None
        cfg, rec = _stage_cfg(recipe, n, e, spec, where[n])
        deps = {local: _ref(n, local, ref) for local, ref in e.inputs.items()}
        for local, (s, key) in deps.items():
            prod = out[s].spec
            if key is not None and key != "dir" and prod.outputs and key not in prod.outputs:
                raise ConfigError(f"{where[n]}: stage {n!r}: input {local!r} refers to {s}.{key}, but stage {s!r} "
                                  f"({out[s].kind}) has no output {key!r} (outputs: {', '.join(prod.outputs)}, dir)")
        p = Planned(n, kind, spec, e, cfg, rec, deps)
        p.parts = {"kind": kind, "version": spec.version, "config": _config_part(p),
                   "inputs": {loc: [out[s].fingerprint, key] for loc, (s, key) in sorted(deps.items())},
                   "files": {f: _stamp(f) for f in spec.external_files(cfg)}}
        p.fingerprint = _hash(p.parts)
        p.folder = run_dir / f"{n}-{p.fingerprint[:12]}"
        out[n] = p
    _mark(list(out.values()), run_dir)
    return list(out.values())


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix.rstrip("."): d}
    r: dict[str, Any] = {}
    for k, v in d.items():
        r.update(_flat(v, f"{prefix}{k}."))
    return r


def _why(p: Planned, prev: dict | None, changed: set[str]) -> str:
    if prev is None:
        return "not run before"
    old = prev.get("parts", {})
    a, b = _flat(old.get("config", {})), _flat(p.parts["config"])
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    if keys:
        shown = ", ".join(f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in keys[:3])
        return f"config changed ({shown}{', ...' if len(keys) > 3 else ''})"
    ups = sorted({s for s, _ in p.deps.values() if s in changed})
    if ups:
        return f"input changed (upstream {', '.join(ups)} re-runs)"
    if old.get("files") != p.parts["files"]:
        return "input files changed"
    if old.get("version") != p.parts["version"]:
        return "stage version changed"
    return "inputs changed"


def _mark(planned: list[Planned], run_dir: Path) -> None:
    prev = _read_json(run_dir / "run.json").get("stages", {})
    changed: set[str] = set()
    for p in planned:
        if (p.folder / "stage.json").is_file():
            p.status, p.reason = "cached", ""
            continue
        p.status = "resume" if p.folder.is_dir() else "run"
        p.reason = "killed mid-stage: resuming" if p.status == "resume" else _why(p, prev.get(p.name), changed)
        changed.add(p.name)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def select(planned: list[Planned], until: str | None = None, start: str | None = None) -> list[Planned]:
    """``until``: only that stage and what it needs. ``start``: force it and everything downstream to re-run."""
    by = {p.name: p for p in planned}
    for flag, s in (("--until", until), ("--from", start)):
        if s is not None and s not in by:
            raise ConfigError(f"{flag} {s}: no such stage (stages: {', '.join(by)})")
    keep = [p.name for p in planned]
    if until is not None:
        need, todo = set(), [until]
        while todo:
            n = todo.pop()
            if n not in need:
                need.add(n)
                todo += [s for s, _ in by[n].deps.values()]
        keep = [n for n in keep if n in need]
    if start is not None:
        forced = {start}
        for p in planned:  # planned is in dependency order
            if any(s in forced for s, _ in p.deps.values()):
                forced.add(p.name)
        for n in keep:
            if n in forced:
                by[n].status, by[n].reason = "forced", f"--from {start}: its previous outputs are replaced"
    return [by[n] for n in keep]


def describe_plan(selected: Iterable[Planned]) -> list[tuple[str, str, str, str, str]]:
    """Rows (stage, kind, status, folder, why) for --dry-run and the run header."""
    return [(p.name, p.kind, p.status, str(p.folder), p.reason) for p in selected]
