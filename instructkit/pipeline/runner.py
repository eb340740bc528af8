"""Run a recipe's stages; each stage's outputs are cached under a fingerprint of what it depends on.

Small on purpose: stages run one after another in dependency order, in-process, as plain functions (see
:mod:`.registry`); the plan (order, fingerprints, what is cached and why) is :mod:`.plan`. A folder without
``stage.json`` is a killed attempt: the stage is called again on the same folder with ``ctx.resuming``
(train resumes from its checkpoints, eval from its request cache).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from instructkit.jsonl import write_atomic
from instructkit.errors import ConfigError, InstructkitError
from instructkit.pipeline.plan import (Planned, _read_json, default_stages, describe_plan, order, plan,  # noqa: F401
                                       select)
from instructkit.config.recipe import Recipe


@dataclass
class StageContext:
    """What a stage function gets besides its config."""

    name: str
    kind: str
    out: Path                 # this stage's folder (created); write only here
    run_dir: Path             # the recipe's output_dir
    inputs: dict[str, Any]    # resolved input values
    recipe: Any               # the Recipe (with this stage's overlay when the kind has no config type)
    fingerprint: str
    resuming: bool            # the folder holds a killed attempt: resume from it
    console: Any
    seed: int = 0


def _cpu_s() -> float:
    import resource
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _write_json(path: Path, obj: Any) -> None:
    write_atomic(path, json.dumps(obj, indent=1, sort_keys=False, default=str) + "\n")


def run(recipe: Recipe, source: str | Path | None = None, *, until: str | None = None, start: str | None = None,
        dry_run: bool = False, overwrite: bool = False, console: Any = None) -> dict[str, Any]:
    """Plan, then run every selected stage that is not cached. Returns ``{stage: {status, outputs, ...}}``."""
    from rich.console import Console

    con = console or Console()
    planned = plan(recipe, source)
    selected = select(planned, until, start)
    rows = describe_plan(selected)
    for name, kind, status, folder, why in rows:
        con.print(f"  {name:<14} {kind:<18} {status:<7} {folder}" + (f"  ({why})" if why else ""), highlight=False,
                  soft_wrap=True)
    if dry_run:
        return {p.name: {"status": p.status, "folder": str(p.folder), "reason": p.reason} for p in selected}
    run_dir = Path(recipe.resolved_output_dir())
    from instructkit.outputs import claim_output_dir
    # the run folder holds stage folders and run.json; a folder of someone else's files is refused
    claim_output_dir(run_dir, "run", overwrite=overwrite, also_ours=lambda names: "run.json" in names)
    by = {p.name: p for p in planned}
    results: dict[str, dict] = {}
    state = _read_json(run_dir / "run.json")
    state.update({"recipe": str(source) if source else None, "name": recipe.name})
    state.setdefault("stages", {})
    for i, p in enumerate(selected, 1):
        inputs = {}
        for local, (s, key) in p.deps.items():
            outs = results.get(s, {}).get("outputs") or _read_json(by[s].folder / "stage.json").get("outputs")
            if outs is None:
                raise InstructkitError(f"stage {p.name!r}: input {local!r} needs stage {s!r}, which has not run "
                                       f"(run without --from/--until, or run {s!r} first)")
            if key is not None and key not in outs:
                raise ConfigError(f"stage {p.name!r}: input {local!r}: stage {s!r} has no output {key!r} "
                                  f"(outputs: {', '.join(outs)})")
            inputs[local] = outs[key] if key is not None else outs
        if p.status == "cached":
            results[p.name] = {"status": "cached", "outputs": _read_json(p.folder / "stage.json")["outputs"]}
            state["stages"][p.name] = {**state["stages"].get(p.name, {}), "status": "cached"}
            continue
        con.rule(f"[bold]{i}/{len(selected)} {p.name} ({p.kind})[/bold]" + (f": {p.reason}" if p.reason else ""))
        # --from: the user asked to redo this stage; its folder is the runner's own (RUN/NAME-FP12 inside the
        # claimed run folder), never a path a recipe names, so replacing it deletes nothing of the user's
        if p.status == "forced" and p.folder.exists() and p.folder.parent.resolve() == run_dir.resolve():
            shutil.rmtree(p.folder)
        resuming = p.folder.is_dir()
        p.folder.mkdir(parents=True, exist_ok=True)
        ctx = StageContext(p.name, p.kind, p.folder, run_dir, inputs, p.recipe, p.fingerprint, resuming, con,
                           recipe.seed)
        t0, c0 = time.perf_counter(), _cpu_s()
        try:
            outs = p.spec.function()(ctx, p.cfg)
        except InstructkitError as err:
            if hasattr(err, "checkpoint"):  # training stopped on a signal after checkpointing
                con.print(f"stage {p.name!r} stopped; run the same `instructkit run` command again to resume it "
                          f"from {p.folder}", highlight=False)
            raise type(err)(f"stage {p.name!r} ({p.kind}): {err}") if type(err) in (InstructkitError, ConfigError) \
                else err
        finally:
            # stages run in one process: the stage's models go now, not at some later cyclic collection
            # (the demo's six trainings and seven scored models would otherwise pile up; models/memory.py)
            from instructkit.models.memory import release
            release()
        wall, cpu = round(time.perf_counter() - t0, 2), round(_cpu_s() - c0, 2)
        # the load average says whether a slow stage met a slow method or a busy machine
        timing = {"wall_s": wall, "cpu_s": cpu, "load_avg_1m": round(os.getloadavg()[0], 2)}
        if not isinstance(outs, dict):
            raise InstructkitError(f"stage {p.name!r} ({p.kind}) returned {type(outs).__name__}, not a dict")
        missing = [k for k in p.spec.outputs if k not in outs]
        if missing:
            raise InstructkitError(f"stage {p.name!r} ({p.kind}) did not return its declared outputs {missing}")
        outs = {**outs, "dir": str(p.folder)}
        record = {"name": p.name, "kind": p.kind, "fingerprint": p.fingerprint, "parts": p.parts,
                  "inputs": inputs, "outputs": outs, **timing}
        _write_json(p.folder / "stage.json", record)
        results[p.name] = {"status": "ran", "outputs": outs, **timing}
        state["stages"][p.name] = {"kind": p.kind, "folder": str(p.folder), "fingerprint": p.fingerprint,
                                   "parts": p.parts, "status": "ran", **timing}
        _write_json(run_dir / "run.json", state)
    for p in selected:  # remember the fingerprints of this run (the "why" of the next one compares with them)
        state["stages"].setdefault(p.name, {}).update({"kind": p.kind, "folder": str(p.folder),
                                                       "fingerprint": p.fingerprint, "parts": p.parts})
    _write_json(run_dir / "run.json", state)
    return results
