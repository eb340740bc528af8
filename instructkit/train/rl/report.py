"""Before/after over several RL runs (seeds): the ``rl.report`` pipeline stage.

Each input is a training stage of ``train.objective: grpo | rloo | ppo``; its run folder holds
``heldout.json`` (every held-out item scored before and after, ``rl/heldout.py``). Per run: the mean
before and after and the paired delta with its 95% bootstrap interval. Pooled: the mean per-item delta
over all runs, with a cluster bootstrap that resamples held-out *items* (an item scored in every seed is
one cluster: seeds share the items, so they are not independent draws).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from instructkit.errors import ConfigError


def _load(label: str, outs: Any) -> dict:
    if not isinstance(outs, dict) or not outs.get("summary"):
        raise ConfigError(f"rl.report input {label!r} must be a whole RL training stage (e.g. {label}: grpo_s0)")
    path = Path(outs["summary"]).parent / "heldout.json"
    if not path.is_file():
        raise ConfigError(f"rl.report input {label!r}: {path} is missing (the run had no held-out prompts: set "
                          "train.rl.heldout_prompts)")
    return json.loads(path.read_text())


def pooled(runs: dict[str, dict], metric: str) -> dict[str, Any]:
    from instructkit.stats import bootstrap_ci

    before, after, deltas, groups = [], [], [], []
    for r in runs.values():
        for it in r["items"]:
            x, y = it["scores_before"][metric], it["scores_after"][metric]
            before.append(x)
            after.append(y)
            deltas.append(y - x)
            groups.append(it["id"])
    d, lo, hi = bootstrap_ci(deltas, groups)
    return {"before": bootstrap_ci(before, groups)[0], "after": bootstrap_ci(after, groups)[0], "delta": d,
            "delta_ci": [lo, hi], "n_items": len(set(groups)), "n_runs": len(runs)}


def stage(ctx: Any, cfg: Any) -> dict:
    runs = {label: _load(label, outs) for label, outs in ctx.inputs.items()}
    if not runs:
        raise ConfigError("rl.report needs inputs: the RL training stages to compare (one per seed)")
    metrics = sorted(set.intersection(*(set(r["metrics"]) for r in runs.values())))
    lines = [f"# {cfg.name}: held-out before / after RL", "", cfg.description, "",
             "| run | reward | n | before | after | delta | 95% CI (paired) |", "|---|---|---|---|---|---|---|"]
    scores: dict[str, Any] = {}
    for m in metrics:
        for label, r in runs.items():
            s = r["metrics"][m]
            lines.append(f"| {label} | {m} | {r['n']} | {s['before']:.4f} | {s['after']:.4f} | {s['delta']:+.4f} | "
                         f"[{s['delta_ci'][0]:+.4f}, {s['delta_ci'][1]:+.4f}] |")
        p = pooled(runs, m)
        lines.append(f"| **all {p['n_runs']} runs** | {m} | {p['n_items']} items | {p['before']:.4f} | "
                     f"{p['after']:.4f} | **{p['delta']:+.4f}** | [{p['delta_ci'][0]:+.4f}, {p['delta_ci'][1]:+.4f}] |")
        scores[f"{m} (after - before)"] = {"format": "greedy", "n": p["n_items"], "metric": m, "value": p["delta"],
                                           "ci": p["delta_ci"], "before": p["before"], "after": p["after"]}
    wins = {label: r["win_rate_vs_start"] for label, r in runs.items() if r.get("win_rate_vs_start")}
    for label, w in wins.items():
        lines.append(f"\nwin rate of {label} over its start by {w['by']}: {w['value']:.3f} "
                     f"[{w['ci'][0]:.3f}, {w['ci'][1]:.3f}]")
    ctx.out.mkdir(parents=True, exist_ok=True)
    (ctx.out / "report.md").write_text("\n".join(lines) + "\n")
    (ctx.out / "report.json").write_text(json.dumps({"runs": {k: {kk: vv for kk, vv in r.items() if kk != "items"}
                                                              for k, r in runs.items()}, "scores": scores}, indent=1))
    ctx.console.print("\n".join(lines[4:]), highlight=False, markup=False)
    return {"report": str(ctx.out / "report.md"), "scores": scores}
