"""The held-out verdict, by written rules over a cluster's score table (issue #25).

Three outcomes, checked in this order; the report prints the rule that fired and the numbers that
made it fire:

* **transfer** - on *every* seed the tuned model beats both the *calibrated* and the raw base (paired
  95% CIs of the per-item differences exclude 0: a calibration that hurts is no control, the stronger
  training-free base is), and contrast-twin consistency ("both twins right") rises on every seed
  (paired CI over pairs excludes 0). Without twins, the prior-invariant measures stand in for them:
  balanced accuracy and the margin AUC must both rise by more than ``TOL`` (mean over seeds); a
  generative task (no options, no option prior) has neither and rests on the first condition.
* **prior shift** - accuracy over the raw base rises on every seed (paired CI excludes 0), but none of
  balanced accuracy, the margin AUC (both: mean over seeds up by more than ``TOL``) and twin
  consistency (CI excludes 0) rises: the model changed which option it prefers, not what it reads.
* **no detectable effect** - anything else (including a drop, and mixed signals), with the reason.

A score table (one cluster)::

    {"base": {"acc", "balanced_acc", "margin_auc", "consistency"},
     "calibrated_base": {"acc", "kind"},
     "seeds": [{"acc", "balanced_acc", "margin_auc", "consistency",
                "delta_calibrated": [d, lo, hi], "delta_raw": [d, lo, hi],
                "delta_consistency": [d, lo, hi] or None}, ...]}
"""

from __future__ import annotations

from statistics import mean
from typing import Any

TOL = 0.02  # a rise of balanced accuracy / margin AUC smaller than this is not called a rise

TRANSFER, PRIOR_SHIFT, NULL = "transfer", "prior shift", "no detectable effect"
RULES = {
    TRANSFER: "tuned beats the calibrated and the raw base with paired 95% CIs excluding 0 on every seed, and "
              "twin consistency rises (paired CI over twin pairs excluding 0) on every seed - without twins, "
              f"balanced accuracy and margin AUC both rise by more than {TOL}",
    PRIOR_SHIFT: "accuracy over the raw base rises (CI excluding 0 on every seed) but neither balanced accuracy "
                 f"nor the margin AUC rises by more than {TOL} (mean over seeds) and twin consistency does not rise",
    NULL: "neither rule above holds",
}


def _ci(x: Any) -> str:
    return f"{x[0]:+.3f} [{x[1]:+.3f}, {x[2]:+.3f}]"


def _rises(vals: list[Any]) -> bool:
    return bool(vals) and all(v is not None and v[1] > 0 for v in vals)


def _mean_delta(seeds: list[dict], base: dict, key: str) -> float | None:
    vals = [s.get(key) for s in seeds]
    if base.get(key) is None or any(v is None for v in vals) or not vals:
        return None
    return mean(vals) - base[key]


def decide(table: dict) -> dict:
    """{"verdict", "rule", "why", "checks"} for one cluster's score table (see the module docstring)."""
    seeds, base, cal = table["seeds"], table["base"], table.get("calibrated_base") or {}
    if not seeds:
        return {"verdict": NULL, "rule": "no tuned model was scored", "why": "no seeds", "checks": {}}
    twins = [s.get("delta_consistency") for s in seeds]
    has_twins = all(t is not None for t in twins)
    checks = {
        "beats_calibrated_every_seed": _rises([s.get("delta_calibrated") for s in seeds]),
        "consistency_rises_every_seed": _rises(twins) if has_twins else None,
        "accuracy_rises_every_seed": _rises([s.get("delta_raw") for s in seeds]),
        "balanced_acc_delta": _mean_delta(seeds, base, "balanced_acc"),
        "margin_auc_delta": _mean_delta(seeds, base, "margin_auc"),
        "n_seeds": len(seeds),
    }
    cal_s = "; ".join(f"seed {i}: {_ci(s['delta_calibrated'])}" for i, s in enumerate(seeds)
                      if s.get("delta_calibrated"))
    raw_s = "; ".join(f"seed {i}: {_ci(s['delta_raw'])}" for i, s in enumerate(seeds) if s.get("delta_raw"))
    tw_s = ("; ".join(f"seed {i}: {_ci(t)}" for i, t in enumerate(twins)) if has_twins else "not measured (no twins)")
    bal, auc = checks["balanced_acc_delta"], checks["margin_auc_delta"]
    side = (f"balanced acc {'n/a' if bal is None else f'{bal:+.3f}'}, margin AUC "
            f"{'n/a' if auc is None else f'{auc:+.3f}'} (mean over seeds minus base)")
    kind = cal.get("kind", "calibrated")
    # without twins a classification task needs the prior-invariant measures up instead (generative: none)
    invariant_up = has_twins or (bal is None and auc is None) or \
        (bal is not None and bal > TOL and auc is not None and auc > TOL)
    if checks["beats_calibrated_every_seed"] and checks["accuracy_rises_every_seed"] \
            and checks["consistency_rises_every_seed"] is not False and invariant_up:
        v = TRANSFER
        why = (f"tuned - {kind} base: {cal_s}; tuned - raw base: {raw_s}; twin consistency tuned - base: {tw_s}"
               + ("" if has_twins else f"; {side}"))
    elif (checks["accuracy_rises_every_seed"] and (bal is not None or auc is not None)  # generation: no option prior
          and not (bal is not None and bal > TOL)
          and not (auc is not None and auc > TOL) and not checks["consistency_rises_every_seed"]):
        v = PRIOR_SHIFT
        why = f"tuned - raw base: {raw_s}; but {side}; twin consistency: {tw_s}"
    else:
        v = NULL
        parts = []
        if not checks["beats_calibrated_every_seed"]:
            parts.append(f"tuned does not beat the {kind} base on every seed ({cal_s or 'n/a'})")
        if checks["consistency_rises_every_seed"] is False:
            parts.append(f"twin consistency does not rise on every seed ({tw_s})")
        if not checks["accuracy_rises_every_seed"]:
            parts.append(f"accuracy over the raw base does not rise on every seed ({raw_s or 'n/a'})")
        elif not invariant_up:
            parts.append(f"no twins, and the prior-invariant measures do not both rise by more than {TOL} ({side})")
        else:
            parts.append(f"accuracy rose but so did a prior-invariant measure ({side})")
        why = "; ".join(parts)
    return {"verdict": v, "rule": RULES[v], "why": why, "checks": checks}


def sentence(cluster: str, d: dict) -> str:
    """The verdict line the report prints: outcome, the rule that fired, and why."""
    return f"{cluster}: {d['verdict'].upper()} - rule: {d['rule']}. Why: {d['why']}."
