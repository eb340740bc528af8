"""bench_eval's comparison: per-item prediction agreement, accuracy, and the useful FLOPs MFU is counted on."""

from __future__ import annotations

import os
from typing import Any


def useful_flops(tok: Any, n_params: int, items_of: list, run: dict) -> float:
    """2 N per prompt token (once per item) + 2 N per generated token: the work both tools must do."""
    prompt = sum(len(tok(it["prompt"], add_special_tokens=False)["input_ids"]) for it in run["items"])
    gen = sum(len(tok(it["text"], add_special_tokens=False)["input_ids"]) for it in run["items"] if "text" in it)
    return 2.0 * n_params * (prompt + gen)


def compare(items_of: list, peer: dict, us: dict) -> dict:
    """Per-item agreement between two runs over the same items (``items_of``: the EvalItems, in order)."""
    diffs, max_abs, same_prompt = [], 0.0, 0
    for k, (it, a, b) in enumerate(zip(items_of, peer["items"], us["items"])):
        same_prompt += a["prompt"] == b["prompt"] == it.prompt
        if "ll" in a:
            max_abs = max(max_abs, max(abs(x - y) for x, y in zip(a["ll"], b["ll"])))
            pa, pb = max(range(len(a["ll"])), key=a["ll"].__getitem__), max(range(len(b["ll"])), key=b["ll"].__getitem__)
            if pa != pb:
                srt = sorted(a["ll"], reverse=True)
                diffs.append({"item": k, "task": it.task, "peer": it.choices[pa], "ours": it.choices[pb],
                              "peer_top2_margin": srt[0] - srt[1], "max_abs_dll": max(abs(x - y) for x, y in zip(a["ll"], b["ll"]))})
        else:
            xa, xb = it.spec.extract_text(a["text"], it.options), it.spec.extract_text(b["text"], it.options)
            if a["text"] != b["text"]:
                pre = os.path.commonprefix([a["text"], b["text"]])
                diffs.append({"item": k, "task": it.task, "answer_peer": xa, "answer_ours": xb,
                              "same_answer": xa == xb, "common_prefix_chars": len(pre),
                              "peer_tail": a["text"][len(pre):][:80], "ours_tail": b["text"][len(pre):][:80]})
    n = len(items_of)
    return {"items": n, "same_prompt": same_prompt, "differing_items": len(diffs),
            "differing_answers": sum(1 for d in diffs if not d.get("same_answer", False)),
            "max_abs_dll": max_abs if any("ll" in a for a in peer["items"]) else None, "differences": diffs}


def accuracy(items_of: list, run: dict) -> float:
    ok = 0
    for it, r in zip(items_of, run["items"]):
        if "ll" in r:
            ok += max(range(len(r["ll"])), key=r["ll"].__getitem__) == it.target_index
        else:
            ok += it.spec.score(it.spec.extract_text(r["text"], it.options), it.target, it.options) == 1.0
    return ok / max(len(items_of), 1)
