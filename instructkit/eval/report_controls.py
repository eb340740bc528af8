"""Per-cluster controls of the held-out report: calibrated base, baselines, seeds, twins, the verdict.

Reads the prediction rows of every scored model (``rows[label][set]``, contrast twins included) and
the per-task ``controls`` the runner wrote; the tuned and oracle models may have several seeds
(labels ``tuned``, ``tuned@1``, ...). Everything paired is paired on the same items (the sets are
identical across models); cluster means average task means, as the accuracy does.
"""

from __future__ import annotations

from collections import defaultdict
from statistics import mean, pstdev
from typing import Any

from instructkit import stats as S
from instructkit.eval.controls import calibrated_pred
from instructkit.eval.verdict import decide, sentence

CAL_KEYS = {"cf_scores": "content-free calibrated", "mask_scores": "masked-slot calibrated"}


def seed_labels(models: list[str], kind: str) -> list[str]:
    return [m for m in models if m == kind or m.startswith(kind + "@")]


def _main(rows: list[dict]) -> list[dict]:
    return [r for r in rows if not r.get("twin")]


def _vals(rows: list[dict], metric: str) -> list[float]:
    return [float(r["metrics"][metric]) for r in _main(rows)]


def _cal_vals(rows: list[dict], key: str) -> list[float] | None:
    main = _main(rows)
    if not main or any(not r.get(key) or r.get("gold_class") is None for r in main):
        return None
    return [float(calibrated_pred(r["scores"], r[key]) == r["gold_class"]) for r in main]


def _pairs(rows: list[dict], correct: list[float] | None = None) -> dict[str, float]:
    """pair id -> 1.0 when both twins are right."""
    vals = correct if correct is not None else [float(r["correct"]) for r in rows]
    by: dict[str, list[float]] = defaultdict(list)
    for r, v in zip(rows, vals):
        if r.get("pair"):
            by[r["pair"]].append(v)
    return {p: float(all(x == 1.0 for x in v)) for p, v in by.items() if len(v) == 2}


def _ctl(results: dict, label: str, name: str, key: str) -> float | None:
    t = results.get(label, {}).get("tasks", {}).get(name) or {}
    return (t.get("controls") or {}).get(key)


def _avg(xs: list[Any]) -> float | None:
    xs = [x for x in xs if x is not None]
    return sum(xs) / len(xs) if xs else None


def cluster_controls(trs: list[dict], rows: dict, results: dict, models: list[str], n_boot: int,
                     seed: int) -> dict[str, Any]:
    """The controls block of one cluster (held-out or seen) and its verdict (held-out only)."""
    names = [t["name"] for t in trs]
    metric = {t["name"]: t["metric"] for t in trs}
    groups = {n: [r["example_id"] for r in _main(rows["base"][n])] for n in names}
    base_v = {n: _vals(rows["base"][n], metric[n]) for n in names}
    out: dict[str, Any] = {
        "chance": _avg([t["chance"] for t in trs]),
        "baselines": {t["task"]: _ctl(results, "base", t["name"], "baselines") for t in trs},
    }
    # calibrated base: every variant all tasks of the cluster have; the higher one is the bar
    cal: dict[str, dict] = {}
    for key, kind in CAL_KEYS.items():
        per = {n: _cal_vals(rows["base"][n], key) for n in names}
        if all(v is not None for v in per.values()):
            m, lo, hi = S.mean_of_tasks_ci([(per[n], groups[n]) for n in names], n_boot, seed)
            cal[kind] = {"value": m, "ci": [lo, hi], "per_item": per, "key": key}
    if cal:
        kind = max(cal, key=lambda k: cal[k]["value"])
        bar = cal[kind]
    else:  # generation (or no calibration prompts): the raw base is the bar
        kind, bar = "raw (no calibration)", {"value": _avg([sum(v) / len(v) for v in base_v.values()]),
                                              "per_item": base_v, "ci": None, "key": None}
    out["calibrated_base"] = {k: {"value": v["value"], "ci": v["ci"]} for k, v in cal.items()}
    out["calibrated_bar"] = {"kind": kind, "value": bar["value"], "ci": bar["ci"]}

    def stats_of(label: str) -> dict[str, Any]:
        have = all(n in rows.get(label, {}) for n in names)
        if not have:
            return {}
        vals = {n: _vals(rows[label][n], metric[n]) for n in names}
        acc = S.mean_of_tasks_ci([(vals[n], groups[n]) for n in names], n_boot, seed)
        pairs = {}
        for n in names:
            pairs.update(_pairs(rows[label][n]))
        d: dict[str, Any] = {
            "acc": acc[0], "ci": [acc[1], acc[2]],
            "balanced_acc": _avg([_ctl(results, label, n, "balanced_acc") for n in names]),
            "margin_auc": _avg([_ctl(results, label, n, "margin_auc") for n in names]),
            "consistency": sum(pairs.values()) / len(pairs) if pairs else None, "_pairs": pairs, "_vals": vals}
        return d

    base = stats_of("base")
    bal_pairs = {}
    if bar["key"]:
        for n in names:
            main = _main(rows["base"][n])
            allr = [r for r in rows["base"][n] if r.get(bar["key"])]
            if len(allr) == len(rows["base"][n]) and main:
                bal_pairs.update(_pairs(allr, [float(calibrated_pred(r["scores"], r[bar["key"]]) == r["gold_class"])
                                               for r in allr]))
    out["base"] = {k: v for k, v in base.items() if not k.startswith("_")}
    if bal_pairs:
        out["calibrated_bar"]["consistency"] = sum(bal_pairs.values()) / len(bal_pairs)
    seeds = []
    for label in seed_labels(models, "tuned"):
        s = stats_of(label)
        if not s:
            continue
        s["label"] = label
        s["delta_raw"] = list(S.mean_of_tasks_ci(
            [([b - a for a, b in zip(base_v[n], s["_vals"][n])], groups[n]) for n in names], n_boot, seed))
        s["delta_calibrated"] = list(S.mean_of_tasks_ci(
            [([b - a for a, b in zip(bar["per_item"][n], s["_vals"][n])], groups[n]) for n in names], n_boot, seed))
        common = sorted(set(s["_pairs"]) & set(base["_pairs"]))
        s["delta_consistency"] = (list(S.bootstrap_ci([s["_pairs"][p] - base["_pairs"][p] for p in common], None,
                                                      n_boot, seed)) if common else None)
        seeds.append({k: v for k, v in s.items() if not k.startswith("_")})
    out["tuned_seeds"] = seeds
    if seeds:
        accs = [s["acc"] for s in seeds]
        out["tuned"] = {"mean": mean(accs), "sd": pstdev(accs) if len(accs) > 1 else 0.0, "n_seeds": len(accs),
                        "per_seed": accs}
    oracles = [stats_of(m) for m in seed_labels(models, "oracle")]
    oracles = [o for o in oracles if o]
    if oracles:
        accs = [o["acc"] for o in oracles]
        out["oracle"] = {"mean": mean(accs), "sd": pstdev(accs) if len(accs) > 1 else 0.0, "n_seeds": len(accs),
                         "per_seed": accs, "cis": [o["ci"] for o in oracles],
                         "below_calibrated_base": mean(accs) < bar["value"]}
    return out


def held_out_verdict(cluster: str, ctl: dict) -> tuple[dict, str]:
    """(decision, the line the report prints) for a held-out cluster's controls."""
    table = {"base": ctl["base"], "calibrated_base": {"acc": ctl["calibrated_bar"]["value"],
                                                     "kind": ctl["calibrated_bar"]["kind"]},
             "seeds": ctl["tuned_seeds"]}
    d = decide(table)
    line = sentence(cluster, d)
    o = ctl.get("oracle")
    if o and o["below_calibrated_base"]:
        line += (f" Flag: the oracle ({o['mean']:.3f}) scores below the {ctl['calibrated_bar']['kind']} base "
                 f"({ctl['calibrated_bar']['value']:.3f}): it is no upper bound here.")
    return d, line


def loss_trend(model_dir: str) -> dict | None:
    """Whether a training run's loss had stopped falling (``metrics.jsonl`` beside or above the model):
    the mean logged loss of the last third against the middle third; "still falling" when it dropped by
    more than 5%. None when no log is found (a hub model, a test double)."""
    import json
    from pathlib import Path
    p = Path(str(model_dir))
    for d in (p, p.parent, p.parent.parent):
        f = d / "metrics.jsonl"
        if f.is_file():
            losses = []
            for line in f.read_text().splitlines():
                try:
                    r = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(r.get("loss"), (int, float)) and "eval_loss" not in r:
                    losses.append(float(r["loss"]))
            if len(losses) < 3:
                return {"steps_logged": len(losses), "still_falling": None}
            k = len(losses) // 3
            mid, last = mean(losses[k: 2 * k]), mean(losses[2 * k:])
            return {"steps_logged": len(losses), "loss_middle_third": mid, "loss_last_third": last,
                    "still_falling": last < 0.95 * mid}
    return None
