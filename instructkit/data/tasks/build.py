"""Build a task mixture from a ``mix:`` section and write it: ``mixture.jsonl``, ``manifest.json``, a plot.

Library code shared by ``instructkit data mix``, the pipeline's ``mix`` stage and the demo.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def run_mix(mix: Any, seed: int, out: str, tokenizer: Any = None, plot: bool = True) -> dict[str, Any]:
    """Build, write and report a mixture from a :class:`MixConfig`; returns the manifest."""
    from instructkit.data.tasks import load_tasks
    from instructkit.data.tasks.mixture import MixSpec, add_totals, build_mixture, write_jsonl
    from instructkit.data.tasks.report import plot_composition
    from instructkit.data.tasks.t0 import load_t0_dir
    from instructkit.errors import ConfigError

    if not mix.tasks and not mix.t0_dirs:
        raise ConfigError("mix.tasks and mix.t0_dirs are both empty: nothing to mix")
    from instructkit.data.tasks.formats import FORMATS
    bad = [f for f in mix.formats if f not in FORMATS]
    if bad:
        raise ConfigError(f"mix.formats: unknown format(s) {bad} (formats: {', '.join(FORMATS)})")
    tasks = load_tasks(mix.tasks)
    t0 = [d for folder in mix.t0_dirs for d in load_t0_dir(folder, mix.promptsource_dir)]
    # hold_out names clusters (FLAN) or single task ids (T0-style held-out data sets); build_mixture takes both
    clusters = {t.cluster for t in tasks} | {d.cluster for d in t0}
    unknown = [c for c in mix.hold_out if c not in clusters and c not in {t.id for t in tasks}]
    if unknown:
        raise ConfigError(f"mix.hold_out: unknown cluster(s) or task(s) {unknown} "
                          f"(clusters: {', '.join(sorted(clusters))}; or a task id of mix.tasks)")
    spec = MixSpec(cap=mix.cap, rate_cap=mix.rate_cap, temperature=mix.temperature, weights=dict(mix.weights),
                   total=mix.total, t0_rule=mix.t0_rule, t0_cap=mix.t0_cap, formats=dict(mix.formats),
                   options_prob=mix.options_prob, few_shot_k=mix.few_shot_k,
                   seed=mix.seed if mix.seed is not None else seed)
    records, manifest = build_mixture(tasks, spec, mix.hold_out, t0)
    data = write_jsonl(records)
    add_totals(manifest, records, data, tokenizer)
    o = Path(out)
    o.mkdir(parents=True, exist_ok=True)
    (o / "mixture.jsonl").write_bytes(data)
    (o / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    if plot:
        plot_composition(manifest, str(o / "composition.png"))
    return manifest
