"""The held-out experiment (FLAN, Wei et al. 2022; T0, Sanh et al. 2022) with its controls.

Steps, each a function the demo, the recipe runner and the T0 experiment share:

1. :func:`mix_and_train` - the mixture without the held-out clusters, then training on it ("tuned");
2. :func:`oracle_recipe` + :func:`mix_and_train` - the same training on the held-out tasks' own training
   splits ("oracle": the upper bound, it shows the tasks are learnable at this compute);
3. the report (:func:`instructkit.eval.report.held_out_report`): base, tuned and oracle, zero-shot, on
   distinct examples of every held-out task, rendered with the training chat template, 95% CIs,
   chance level, verdict per cluster, seen clusters as the sanity check, contamination check.

:func:`run_heldout` runs all three and records wall time, CPU time and load average per step, so a
reader can tell a slow machine from a slow method (``experiment.json`` beside the report).
"""

from __future__ import annotations

import json
import os
import resource
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from instructkit.errors import ConfigError


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


@contextmanager
def timed(timing: dict[str, dict], step: str) -> Iterator[None]:
    """Record wall seconds, CPU seconds and the 1-minute load average around a step."""
    t, c = time.time(), _cpu_s()
    yield
    timing[step] = {"wall_s": round(time.time() - t, 1), "cpu_s": round(_cpu_s() - c, 1),
                    "load_avg_1m": round(os.getloadavg()[0], 2)}


def with_sections(recipe: Any, **overlay: dict) -> Any:
    """A copy of ``recipe`` with some sections' fields replaced (validated again)."""
    from instructkit.config.base import validate
    d = recipe.model_dump()
    for section, fields in overlay.items():
        d[section] = {**(d.get(section) or {}), **fields} if isinstance(fields, dict) else fields
    return validate(type(recipe), d, recipe.name)


def mix_and_train(recipe: Any, out: str | Path, *, console: Any = None) -> tuple[dict, Path]:
    """Write the recipe's mixture under ``out/mix`` and train on it into ``out/train``; (manifest, model dir)."""
    from instructkit.data.tasks.cli import run_mix
    from instructkit.train import train

    if recipe.mix is None:
        raise ConfigError(f"recipe {recipe.name!r}: the held-out experiment needs a mix: section")
    out = Path(out)
    manifest = run_mix(recipe.mix, recipe.seed, str(out / "mix"), plot=False)
    r = with_sections(recipe, output_dir=str(out / "train"),
                      data={"paths": [str(out / "mix" / "mixture.jsonl")]})
    res = train(r)
    if console is not None:
        console.print(f"trained {out.name}: {res.model_dir}")
    return manifest, Path(res.model_dir)


def oracle_recipe(recipe: Any, tasks: list[str], *, per_task: int = 300, train: dict | None = None) -> Any:
    """The oracle: the same model, template and training settings, on ``per_task`` training rows of each
    held-out task (all its templates, the recipe's formats), nothing held out."""
    if not tasks:
        raise ConfigError("the oracle needs held-out tasks with a training split (none given)")
    mix = {"tasks": list(tasks), "hold_out": [], "t0_dirs": [], "cap": per_task, "rate_cap": per_task,
           "total": None, "weights": {}, "t0_rule": False}
    return with_sections(recipe, name=f"{recipe.name}_oracle", mix=mix, train=dict(train or {}))


def run_heldout(recipe: Any, out: str | Path, *, base: str | None = None, oracle: bool = True,
                oracle_per_task: int = 300, oracle_train: dict | None = None, held_out: list[str] | None = None,
                oracle_tasks: list[str] | None = None, limit: int | None = 200, templates: str = "all",
                max_seen: int | None = 4, dtype: str = "auto", batch_size: int = 16,
                console: Any = None, command: str | None = None, seeds: int = 1,
                preregistered: dict | None = None) -> dict:
    """Tuned (+ oracle) training and the held-out report; returns the report with ``experiment`` added.

    ``held_out``: extra held-out evaluation refs beside the manifest's held-out tasks (e.g. BIG-bench
    task YAML files in the T0 experiment); ``oracle_tasks``: what the oracle trains on (default: the
    held-out tasks, manifest's and extra). ``limit``: distinct examples per task.
    """
    from instructkit.eval.report import held_out_report

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    timing: dict[str, dict] = {}
    say = console.print if console is not None else (lambda *a, **k: None)
    base = base or recipe.model.name_or_path
    tuned_dirs, oracle_dirs = [], []
    manifest: dict = {}
    for s in range(seeds):
        r_s = with_sections(recipe, seed=recipe.seed + s) if s else recipe
        sfx = "" if s == 0 else f"_seed{s}"
        with timed(timing, f"tuned: mix + train{sfx}" if s else "tuned: mix + train"):
            m_s, d_s = mix_and_train(r_s, out / f"tuned{sfx}", console=console)
        if s == 0:
            manifest = m_s
        tuned_dirs.append(str(d_s))
    tuned_dir = tuned_dirs[0]
    held_refs = list((manifest["held_out"].get("refs") or {}).values()) + list(held_out or [])
    oracle_dir = None
    if oracle:
        tasks = list(oracle_tasks) if oracle_tasks is not None else held_refs
        for s in range(seeds):
            r_s = with_sections(recipe, seed=recipe.seed + s) if s else recipe
            sfx = "" if s == 0 else f"_seed{s}"
            with timed(timing, f"oracle: mix + train{sfx}" if s else "oracle: mix + train"):
                _, d_s = mix_and_train(oracle_recipe(r_s, tasks, per_task=oracle_per_task, train=oracle_train),
                                       out / f"oracle{sfx}", console=console)
            oracle_dirs.append(str(d_s))
        oracle_dir = oracle_dirs[0]
    say("evaluating base, tuned" + (", oracle" if oracle else "") + " ...")
    with timed(timing, "report: evaluate all models"):
        rep = held_out_report(base, tuned_dirs, out / "tuned" / "mix" / "manifest.json", out / "report",
                              oracle=oracle_dirs or None, limit=limit, templates=templates,
                              options=recipe.mix.options_prob, preregistered=preregistered,
                              seed=recipe.seed, chat_template=recipe.model.chat_template, held_out=held_out,
                              max_seen=max_seen, dtype=dtype, batch_size=batch_size, progress=console is not None)
    total = {"wall_s": round(sum(t["wall_s"] for t in timing.values()), 1),
             "cpu_s": round(sum(t["cpu_s"] for t in timing.values()), 1)}
    # 2 cores: an idle machine would take about cpu_s / 2 (torch keeps both busy); a loaded one takes longer
    total["idle_estimate_s"] = round(total["cpu_s"] / max(1, min(2, os.cpu_count() or 1)), 1)
    exp = {"recipe": recipe.model_dump(), "base": base, "tuned": str(tuned_dir),
           "oracle": str(oracle_dir) if oracle_dir else None, "tuned_seeds": tuned_dirs, "oracle_seeds": oracle_dirs, "held_out_refs": held_refs,
           "timing": timing, "total": total, "command": command}
    (out / "experiment.json").write_text(json.dumps(exp, indent=1, default=str) + "\n")
    rep["experiment"] = exp
    return rep


def cluster_lines(rep: dict) -> list[str]:
    """One line per cluster: n, chance, base, tuned, oracle with 95% CIs; then its verdict."""
    def fmt(s: dict | None) -> str:
        return "-" if not s else f"{s['value']:.3f} [{s['ci'][0]:.3f}, {s['ci'][1]:.3f}]"
    lines = []
    for c in rep["clusters"]:
        sc = c["scores"]
        lines.append(f"{c['cluster']:<16} {'held-out' if c['held_out'] else 'seen':<8} n={c['n_examples']:<5} "
                     f"chance {c['chance']:.3f}  base {fmt(sc.get('base'))}  tuned {fmt(sc.get('tuned'))}  "
                     f"oracle {fmt(sc.get('oracle'))}")
        if c.get("verdict"):
            lines.append(f"    {c['verdict']}")
    return lines
