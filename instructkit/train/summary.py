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


def write_summary(summary: dict[str, Any], run_dir: Path) -> Path:
    path = run_dir / "summary.json"
    path.write_text(json.dumps(summary, indent=1))
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
