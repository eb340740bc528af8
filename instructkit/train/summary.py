"""The run summary (in the spirit of the survey's Table 8): hardware, time, throughput, memory, method."""

from __future__ import annotations

import json
import platform
import resource
from pathlib import Path
from typing import Any

import torch


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware(num_processes: int) -> dict[str, Any]:
    hw: dict[str, Any] = {"cpu": cpu_model(), "cpu_threads": torch.get_num_threads(), "processes": num_processes}
    if torch.cuda.is_available():
        hw["gpu"] = torch.cuda.get_device_name(0)
        hw["gpu_count"] = torch.cuda.device_count()
    else:
        hw["gpu"], hw["gpu_count"] = None, 0
    return hw


def peak_memory() -> dict[str, float | None]:
    # ru_maxrss is in KiB on Linux
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    cuda = torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None
    return {"peak_rss_mib": round(rss, 1), "peak_cuda_allocated_mib": None if cuda is None else round(cuda, 1)}


def data_summary(stats: dict[str, Any], prepare: dict[str, Any] | None) -> dict[str, Any]:
    """The ``data`` block of summary.json, one source of truth: what happened to the records (read, kept,
    skipped, dropped, truncated, repaired) comes from the data stage's report when files were read; the
    engine adds only what it did after (rows, packing fill, tokens). The engine's own truncation counts are
    dropped then: prepare already cut to max_length, so they are always 0 and would contradict it."""
    if not prepare:
        return dict(stats)
    if not {"read", "examples", "skipped"} <= set(prepare):  # another objective's report: keep it as it is
        return {**stats, "prepare": prepare}
    skipped, dropped = prepare.get("skipped", {}), prepare.get("dropped", {})
    out = {"read": prepare.get("read"), "kept": prepare.get("examples"),
           "skipped": sum(skipped.get("counts", {}).values()), "skipped_by_reason": skipped.get("counts", {}),
           "dropped": prepare.get("dropped_no_trained", 0) + prepare.get("dropped_too_long", 0),
           "dropped_by_reason": dropped.get("counts", {}), "truncated": prepare.get("truncated", 0),
           "truncate": prepare.get("truncate"), "repaired": skipped.get("repaired", {}),
           "unknown_fields": skipped.get("unknown_fields", {}), "drops_file": prepare.get("drops_path"),
           "cache": prepare.get("cache_path")}
    engine = {k: v for k, v in stats.items() if k not in ("truncated", "no_trained_tokens", "examples_in")}
    return {**out, **engine}


def data_report_lines(data: dict[str, Any]) -> list[str]:
    """What the data stage kept and threw away, printed before training starts."""
    if "prompts" in data:  # online RL: prompts, not examples
        return [f"data: {data['prompts']} RL prompts, {data['heldout_prompts']} held out; "
                f"{data.get('too_long', 0)} longer than data.max_length left out; skipped {data.get('skipped') or 0}"]
    if "read" not in data:
        return [f"data: {data.get('examples_used', '?')} examples (given in memory)"]
    lines = [f"data: {data['read']} records read: {data['kept']} kept, {data['skipped']} skipped, "
             f"{data['dropped']} dropped, {data['truncated']} truncated (truncate: {data['truncate']})"]
    for label, key in (("skipped", "skipped_by_reason"), ("dropped", "dropped_by_reason"), ("repaired", "repaired"),
                       ("fields not read", "unknown_fields")):
        if data.get(key):
            lines.append(f"  {label}: " + ", ".join(f"{k} {n}" for k, n in data[key].items()))
    if data.get("dropped") and data.get("drops_file"):
        lines.append(f"  every drop, located: {data['drops_file']}")
    return lines


def write_summary(summary: dict[str, Any], run_dir: Path) -> Path:
    from instructkit.outputs import write_error, write_errors

    path = run_dir / "summary.json"
    try:
        path.write_text(json.dumps(summary, indent=1))
    except write_errors() as e:  # disk full after training: say so in one line (the model is already saved)
        raise write_error(path, e) from None
    return path


def print_summary(summary: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table("", "", title="training run", show_header=False)
    for k, v in summary.items():
        if isinstance(v, dict):
            v = ", ".join(f"{a}={b}" for a, b in v.items())
        elif isinstance(v, float):
            v = f"{v:.4g}"
        t.add_row(k, str(v))
    Console().print(t)
