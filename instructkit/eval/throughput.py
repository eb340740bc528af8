"""Throughput record (survey Table 8's inference column): generation tokens/s, scoring examples/s.

Only requests the backend actually computed count (cache hits on resume are excluded), with the
batch size, dtype and hardware that produced the numbers.
"""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any, Sequence


def hardware() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os
    hw: dict[str, Any] = {"cpu": cpu, "cpu_count": os.cpu_count(), "gpu": None}
    try:
        import torch
        if torch.cuda.is_available():
            hw["gpu"] = torch.cuda.get_device_name(0)
        hw["torch_threads"] = torch.get_num_threads()
    except ImportError:
        pass
    return hw


def throughput_record(lm: Any, cached: Any, sets: Sequence[Any] = ()) -> dict[str, Any]:
    ll_s, gen_s = cached.seconds["loglikelihood"], cached.seconds["generate"]
    n_ll = cached.computed["loglikelihood"]
    # examples/s: multiple-choice items scored; each item costs len(choices) requests
    choices = [len(it.choices) for es in sets for it in es.items if it.choices]
    per_item = (sum(choices) / len(choices)) if choices else 1.0
    return {
        "backend": type(lm).__name__,
        "batch_size": getattr(lm, "batch_size", None),
        "gen_batch_size": getattr(lm, "gen_batch_size", None),
        "dtype": getattr(lm, "dtype", None),
        "hardware": hardware(),
        "scoring": {"requests": n_ll, "seconds": round(ll_s, 4),
                    "requests_per_s": round(n_ll / ll_s, 3) if ll_s else None,
                    "examples_per_s": round(n_ll / per_item / ll_s, 3) if ll_s else None},
        "generation": {"requests": cached.computed["generate"], "tokens": cached.gen_tokens,
                       "seconds": round(gen_s, 4),
                       "tokens_per_s": round(cached.gen_tokens / gen_s, 3) if gen_s else None},
        "cached_requests": dict(cached.cached_hits),
    }


def format_throughput(t: dict[str, Any]) -> str:
    hw = t["hardware"]
    dev = hw.get("gpu") or hw.get("cpu")
    parts = [f"{t['backend']} on {dev}, dtype={t.get('dtype')}, batch_size={t.get('batch_size')}"]
    s, g = t["scoring"], t["generation"]
    if s["requests"]:
        parts.append(f"scoring: {s['examples_per_s']} examples/s ({s['requests_per_s']} requests/s)")
    if g["requests"]:
        width = f", {t['gen_batch_size']} rows" if t.get("gen_batch_size") else ""
        parts.append(f"generation: {g['tokens_per_s']} tokens/s ({g['tokens']} tokens{width})")
    return "; ".join(parts)
