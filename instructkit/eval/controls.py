"""Controls that tell "the model learned the task" from "the model changed its prior over the options".

All functions read the prediction rows the runner writes (``predictions.jsonl``); nothing here calls a
model. For rank classification a row has ``scores`` (log p of each choice), ``gold_class`` and
``pred_class``; the runner adds ``cf_scores`` (the same template with a content-free input, one list
per content-free string: Zhao et al. 2021, "Calibrate Before Use"), ``mask_scores`` (the same prompt
with the task's deciding slot masked) and ``pair`` (the id of a contrast-twin pair, Gardner et al. 2020).

* :func:`baselines` - majority class and always-option-k on exactly the evaluated items; the chance
  line is the best of them (not 1/k: a sample that is 54% option 2 has chance 0.54).
* :func:`margin_auc` - the AUC of the log-prob margin: invariant to a constant preference for an option.
* :func:`calibrated` - accuracy after contextual calibration (content-free) and after masked-slot
  calibration (per item: the option prior given everything but the deciding slot).
* :func:`twin_consistency` - the share of twin pairs with both twins right, with its bootstrap CI.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from typing import Any, Sequence

import numpy as np

from instructkit import stats as S


def _mc(rows: Sequence[dict]) -> list[dict]:
    return [r for r in rows if r.get("gold_class") is not None and r.get("scores")]


def baselines(rows: Sequence[dict]) -> dict[str, Any]:
    """Accuracy of answer-blind predictors on these very items.

    Rank classification: always-option-k for every position k (the majority class is the best of them);
    generation: always the most frequent gold answer. ``best`` is the chance line a report prints."""
    mc = _mc(rows)
    out: dict[str, Any] = {"n": len(rows)}
    if mc:
        k = max(len(r["scores"]) for r in mc)
        gold = Counter(r["gold_class"] for r in mc)
        always = {f"always_option_{j + 1}": gold[j] / len(mc) for j in range(k)}
        maj = max(range(k), key=lambda j: (gold[j], -j))
        out.update(always=always, majority={"class": maj + 1, "acc": gold[maj] / len(mc)},
                   uniform=sum(1.0 / len(r["scores"]) for r in mc) / len(mc))
        best = max(always.items(), key=lambda kv: kv[1])
    else:
        golds = [str((r.get("gold") or [r.get("target", "")])[0]).strip().lower() for r in rows]
        if not golds:
            return {**out, "best": {"name": "none", "acc": float("nan")}}
        ans, c = Counter(golds).most_common(1)[0]
        best = (f"always {ans!r}", c / len(golds))
        out.update(majority={"answer": ans, "acc": best[1]}, uniform=0.0)
    out["best"] = {"name": best[0], "acc": best[1]}
    return out


def _auc(pos: np.ndarray, neg: np.ndarray) -> float | None:
    """P(a positive's margin > a negative's), ties count one half (Mann-Whitney U / (n_pos n_neg))."""
    if len(pos) == 0 or len(neg) == 0:
        return None
    allv = np.concatenate([pos, neg])
    order = allv.argsort(kind="mergesort")
    ranks = np.empty(len(allv))
    sv = allv[order]
    i = 0
    while i < len(sv):  # average ranks over ties
        j = i
        while j + 1 < len(sv) and sv[j + 1] == sv[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2
    return float(u / (len(pos) * len(neg)))


def margin_auc(rows: Sequence[dict], key: str = "scores") -> float | None:
    """AUC of the log-prob margin of each option (its score minus the mean of the others), one-vs-rest,
    averaged over the classes present. Adding a constant to one option's scores on every item moves
    every margin of that class by the same amount: the ranking, hence the AUC, does not change."""
    mc = [r for r in _mc(rows) if r.get(key)]
    if not mc:
        return None
    k = min(len(r[key]) for r in mc)
    aucs = []
    for c in range(k):
        m = np.array([r[key][c] - (sum(r[key][:k]) - r[key][c]) / (k - 1) for r in mc])
        is_c = np.array([r["gold_class"] == c for r in mc])
        a = _auc(m[is_c], m[~is_c])
        if a is not None:
            aucs.append(a)
        if k == 2:  # both one-vs-rest AUCs of a binary task are the same number
            break
    return float(np.mean(aucs)) if aucs else None


def _log_prior(ref: Sequence[Sequence[float]] | Sequence[float]) -> np.ndarray:
    """log of the mean (over content-free inputs) of the option distribution each gives (Zhao et al.)."""
    refs = np.atleast_2d(np.asarray(ref, dtype=float))
    p = np.exp(refs - refs.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    return np.log(p.mean(0))


def calibrated_pred(scores: Sequence[float], ref: Any) -> int:
    """argmax_k log p(k | x) - log p_ref(k): the diagonal W = diag(p_ref)^-1 of "Calibrate Before Use"."""
    return int(np.argmax(np.asarray(scores, dtype=float) - _log_prior(ref)))


def calibrated(rows: Sequence[dict], key: str, n_boot: int = S.N_BOOT, seed: int = 0) -> dict | None:
    """Accuracy (95% CI over examples), balanced accuracy and prediction shares after calibrating every
    row by its ``key`` scores (``cf_scores`` or ``mask_scores``); per-item 0/1 values in ``values``."""
    mc = [r for r in _mc(rows) if r.get(key)]
    if not mc:
        return None
    preds = [calibrated_pred(r["scores"], r[key]) for r in mc]
    vals = [float(p == r["gold_class"]) for p, r in zip(preds, mc)]
    v, lo, hi = S.bootstrap_ci(vals, [r["example_id"] for r in mc], n_boot, seed)
    fake = [dict(r, pred_class=p, correct=p == r["gold_class"]) for p, r in zip(preds, mc)]
    return {"value": v, "ci": [lo, hi], "n": len(mc), "balanced_acc": balanced_accuracy(fake),
            "pred_share": pred_shares(fake), "values": vals, "preds": preds}


def balanced_accuracy(rows: Sequence[dict]) -> float | None:
    mc = [r for r in rows if r.get("gold_class") is not None]
    if not mc:
        return None
    gold, hit = Counter(r["gold_class"] for r in mc), Counter(r["gold_class"] for r in mc if r["correct"])
    return sum(hit[c] / n for c, n in gold.items()) / len(gold)


def pred_shares(rows: Sequence[dict]) -> dict[str, float]:
    """How often each option position is predicted ("option 1": 0.6, ...)."""
    mc = [r for r in rows if r.get("pred_class") is not None]
    k = max((len(r.get("choices") or r.get("scores") or []) for r in mc), default=0)
    c = Counter(r["pred_class"] for r in mc)
    return {f"option {j + 1}": c[j] / len(mc) for j in range(k)} if mc else {}


def twin_consistency(rows: Sequence[dict], correct: Sequence[float] | None = None, n_boot: int = S.N_BOOT,
                     seed: int = 0) -> dict | None:
    """Contrast twins: the share of pairs with both twins right (95% CI over pairs), the share where both
    got the same option (a prior, not the slot, decided), and the pair count. ``correct``: per-row
    0/1 values replacing ``row["correct"]`` (e.g. calibrated predictions)."""
    vals = [float(r["correct"]) for r in rows] if correct is None else list(correct)
    by: dict[str, list[tuple[dict, float]]] = defaultdict(list)
    for r, v in zip(rows, vals):
        if r.get("pair"):
            by[r["pair"]].append((r, v))
    pairs = [p for p in by.values() if len(p) == 2]
    if not pairs:
        return None
    both = [float(a[1] == 1.0 and b[1] == 1.0) for a, b in pairs]
    same = [float(a[0].get("pred_class") == b[0].get("pred_class")) for a, b in pairs]
    m, lo, hi = S.bootstrap_ci(both, None, n_boot, seed)
    return {"value": m, "ci": [lo, hi], "n_pairs": len(pairs), "same_answer": sum(same) / len(same)}


def margin_moves(rows: Sequence[dict]) -> float | None:
    """Binary twins: the share of pairs where flipping the slot moves the margin toward the new gold
    (the signal is in the model even when a prior hides it from the argmax)."""
    by: dict[str, list[dict]] = defaultdict(list)
    for r in _mc(rows):
        if r.get("pair") and len(r["scores"]) == 2:
            by[r["pair"]].append(r)
    ok = []
    for p in by.values():
        if len(p) == 2 and p[0]["gold_class"] != p[1]["gold_class"]:
            a, b = sorted(p, key=lambda r: r["gold_class"])  # a: gold 0, b: gold 1
            ok.append(float((b["scores"][1] - b["scores"][0]) > (a["scores"][1] - a["scores"][0])))
    return sum(ok) / len(ok) if ok else None


def task_controls(rows: Sequence[dict], n_boot: int = S.N_BOOT, seed: int = 0) -> dict[str, Any]:
    """Every control of one task's rows (one model): what results.json carries under ``controls``.
    Contrast twins enter only the twin consistency (the other controls read the sampled items)."""
    main = [r for r in rows if not r.get("twin")]
    base = baselines(main)
    out: dict[str, Any] = {"baselines": base, "chance": base["best"]["acc"]}
    mc = _mc(main)
    if mc:
        out["balanced_acc"] = balanced_accuracy(mc)
        out["margin_auc"] = margin_auc(mc)
        out["pred_share"] = pred_shares(mc)
        for key, name in (("cf_scores", "calibrated_content_free"), ("mask_scores", "calibrated_masked_slot")):
            c = calibrated(mc, key, n_boot, seed)
            if c is not None:
                c.pop("preds")
                out[name] = {k: v for k, v in c.items() if k != "values"}
                allmc = [r for r in _mc(rows) if r.get(key)]
                tw = twin_consistency(allmc, [float(calibrated_pred(r["scores"], r[key]) == r["gold_class"])
                                              for r in allmc], n_boot, seed)
                if tw:
                    out[name]["twin_consistency"] = tw
    tw = twin_consistency(rows, None, n_boot, seed)
    if tw:
        out["twin_consistency"] = tw
        mv = margin_moves(rows)
        if mv is not None:
            out["twin_margin_moves"] = mv
    return out


def is_finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and not math.isnan(x)
