"""The report stage's table of the non-eval stages it is given: training runs and preference-pair synthesis.

A recipe like InstructGPT (SFT -> pairs -> DPO -> win rate) is read from its report alone only when the
report also says what SFT and DPO did (steps, loss first -> last, the preference objective's reward
margin and accuracy) and how many pairs the judge produced from how many samples.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PREF_KEYS = ("reward_margin", "reward_accuracy")
PAIR_KEYS = ("prompts", "samples", "dropped_identical_or_empty", "candidate_pairs", "tied", "tied_inconsistent",
             "decided_by_calibration", "dropped_judge_error", "prompt_sampling_failed")


def _metrics(summary: Any) -> list[dict[str, Any]]:
    """The logged rows of a training run (``metrics.jsonl`` beside its ``summary.json``)."""
    if not summary:
        return []
    path = Path(str(summary)).parent / "metrics.jsonl"
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except ValueError:
            continue
    return [r for r in rows if "loss" in r]


def stage_rows(inputs: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per training input (``final_loss`` in its outputs) and per preference input (``pairs``)."""
    rows = []
    for label, outs in inputs.items():
        if not isinstance(outs, dict):
            continue
        if "final_loss" in outs:
            m = _metrics(outs.get("summary"))
            row: dict[str, Any] = {"stage": label, "kind": "train", "steps": outs.get("steps"),
                                   "first_loss": m[0]["loss"] if m else None, "final_loss": outs.get("final_loss"),
                                   "model": outs.get("model")}
            last = m[-1] if m else {}
            for key in PREF_KEYS:  # logged by preference objectives (dpo/ipo/simpo/orpo/reward) only
                hit = next((k for k in last if k.endswith(key)), None)
                if hit is not None:
                    row[key] = last[hit]
            rows.append(row)
        elif "pairs" in outs:
            counts = outs.get("counts") or {}
            rows.append({"stage": label, "kind": "preference pairs", "pairs": outs["pairs"],
                         **{k: counts[k] for k in PAIR_KEYS if k in counts}})
    return rows


def stage_lines(rows: list[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    out = ["", "## Stages", ""]
    for r in rows:
        if r["kind"] == "train":
            loss = " -> ".join(f"{v:.4f}" for v in (r["first_loss"], r["final_loss"]) if isinstance(v, (int, float)))
            extra = "".join(f", {k} {r[k]:.4f}" for k in PREF_KEYS if isinstance(r.get(k), (int, float)))
            out.append(f"- **{r['stage']}** (train): {r['steps']} steps, loss {loss or 'n/a'}{extra}")
        else:
            counts = ", ".join(f"{k} {r[k]}" for k in PAIR_KEYS if k in r)
            out.append(f"- **{r['stage']}** (preference pairs): {r['pairs']} pairs written ({counts})")
    return out
