"""The held-out results log: every run of a pre-registered design appends one JSON line (no best-of).

A line holds the date, the recipe, the pre-registered settings, the git commit of the code, and per
held-out cluster: n, raw / calibrated base, tuned mean ± SD over seeds with each seed's paired CIs,
the oracle, the best baseline, balanced accuracy, twin consistency and the verdict with its rule.
docs/recipes.md quotes the log in full (:func:`render_log`).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import subprocess
from pathlib import Path
from typing import Any


def _commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def entry(name: str, rep: dict) -> dict[str, Any]:
    clusters = []
    for c in rep["clusters"]:
        ctl = c.get("controls") or {}
        if not c["held_out"]:
            continue
        clusters.append({
            "cluster": c["cluster"], "n_examples": c["n_examples"], "n_items": c["n_items"],
            "chance_best_baseline": ctl.get("chance"),
            "base": ctl.get("base"), "calibrated_base": ctl.get("calibrated_bar"),
            "tuned": ctl.get("tuned"), "tuned_seeds": ctl.get("tuned_seeds"), "oracle": ctl.get("oracle"),
            "verdict": (c.get("decision") or {}).get("verdict"), "why": (c.get("decision") or {}).get("why")})
    return {"date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "recipe": name,
            "commit": _commit(), "load_avg_1m": round(os.getloadavg()[0], 2),
            "preregistered": rep.get("preregistered"), "limit": rep.get("limit"), "seed": rep.get("seed"),
            "options_share": rep.get("options_share"), "models": rep.get("models"), "clusters": clusters}


def append_result(path: str | Path, name: str, rep: dict) -> dict:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    e = entry(name, rep)
    with p.open("a", encoding="utf-8") as f:
        f.write(json.dumps(e, default=str) + "\n")
    return e


def render_log(path: str | Path) -> str:
    """Every logged run as markdown lines (for docs/recipes.md): one line per run and held-out cluster."""
    lines = []
    for raw in Path(path).read_text(encoding="utf-8").splitlines():
        if not raw.strip():
            continue
        e = json.loads(raw)
        for c in e["clusters"]:
            t, cal, b = c.get("tuned") or {}, c.get("calibrated_base") or {}, c.get("base") or {}
            lines.append(f"- {e['date']} `{e['recipe']}` ({e.get('commit')}) {c['cluster']}: n={c['n_examples']}, "
                         f"chance {c['chance_best_baseline']:.3f}, base {b.get('acc', float('nan')):.3f}, "
                         f"calibrated base {cal.get('value', float('nan')):.3f} ({cal.get('kind')}), tuned "
                         f"{t.get('mean', float('nan')):.3f} ± {t.get('sd', float('nan')):.3f} over "
                         f"{t.get('n_seeds', 0)} seeds: **{c['verdict']}** ({c['why']})")
    return "\n".join(lines)
