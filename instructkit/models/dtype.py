"""``dtype: auto``: the fastest compute dtype this machine really has, measured once and cached.

Why measured, not read from a flag list: CPUs differ. One measured here has ``avx512_bf16`` and runs a
bf16 GEMM mix 2.4x faster than fp32; another (Zen 3, no bf16 instructions) runs bf16 8-70x SLOWER,
because torch falls back to converting every tile. A 0.3 s GEMM probe at LM-like shapes decides, and
the result is cached per machine (CPU model, flags, torch version, threads) under the instructkit cache.
On CUDA: bf16 on GPUs with native bf16 (compute capability >= 8), fp16 below (:func:`cuda_choice`).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from functools import lru_cache
from typing import Any

#: bf16 must beat fp32 by this factor to be picked (it costs precision)
MIN_SPEEDUP = 1.3


def _cpu_key() -> str:
    import torch

    info = ""
    try:
        with open("/proc/cpuinfo") as f:
            lines = [ln for ln in f.read().splitlines() if ln.startswith(("model name", "flags"))]
        info = "\n".join(sorted(set(lines)))
    except OSError:
        import platform
        info = platform.processor()
    raw = f"{info}|{torch.__version__}|{torch.get_num_threads()}"
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def gemm_seconds(dtype: Any, m: int = 256, k: int = 576, n: int = 1536, reps: int = 3) -> float:
    """Best-of-``reps`` time of one (m x k) @ (k x n) GEMM (SmolLM2-135M MLP shape) in ``dtype``."""
    import torch

    g = torch.Generator().manual_seed(0)
    a = torch.randn(m, k, generator=g).to(dtype)
    b = torch.randn(k, n, generator=g).to(dtype)
    a @ b  # warm-up (kernel selection, allocation)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return best


def _probe_cpu() -> dict[str, Any]:
    import torch

    fp32 = gemm_seconds(torch.float32)
    # a very slow bf16 path can take seconds per GEMM: one timed rep is enough to rule it out
    bf16 = gemm_seconds(torch.bfloat16, reps=1)
    if bf16 < 1.5 * fp32:
        bf16 = min(bf16, gemm_seconds(torch.bfloat16))
    speedup = fp32 / max(bf16, 1e-12)
    pick = "bfloat16" if speedup >= MIN_SPEEDUP else "float32"
    return {"dtype": pick, "bf16_speedup": round(speedup, 2),
            "why": f"auto: bf16 GEMM {speedup:.2f}x the speed of fp32 on this CPU "
                   f"({'>=' if pick == 'bfloat16' else '<'} {MIN_SPEEDUP}x needed)"}


@lru_cache(maxsize=4)
def probe(device_type: str = "cpu") -> dict[str, Any]:
    """``{"dtype", "why", ...}`` for ``device_type``; CPU results cached on disk per machine."""
    import torch

    if device_type == "cuda":
        return cuda_choice()
    from instructkit.models.paths import cache_dir

    path = cache_dir() / "dtype_probe.json"
    key = _cpu_key()
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):
        cached = {}
    if key in cached:
        return {**cached[key], "cached": True}
    found = _probe_cpu()
    cached[key] = found
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(cached, indent=1))
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache only costs the probe again next time
    return found


def cuda_choice() -> dict[str, Any]:
    """bf16 where the GPU computes it natively (compute capability >= 8: Ampere, Ada, Hopper, Blackwell);
    fp16 below (V100, T4: ``torch.cuda.is_bf16_supported()`` says yes there too, counting a slow emulation),
    which training pairs with fp32 master weights and loss scaling. Never fp32: 5-15x slower on tensor cores."""
    import torch

    if not torch.cuda.is_available():
        return {"dtype": "float32", "why": "auto: no CUDA device visible"}
    major, minor = torch.cuda.get_device_capability()
    if major >= 8:
        return {"dtype": "bfloat16", "why": f"auto: the GPU (compute capability {major}.{minor}) has native bf16"}
    return {"dtype": "float16", "why": f"auto: the GPU (compute capability {major}.{minor}) has no native bf16; "
                                       "fp16 (training adds loss scaling)"}


def enable_tf32() -> None:
    """fp32 matmuls on TF32 tensor cores (CUDA, Ampere+): fp32 models and the fp32 LM-head/loss chunks ~8x
    faster at ~1e-3 relative precision; a no-op without CUDA."""
    import torch

    if torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def resolve_dtype(dtype: str, device_type: str = "cpu") -> tuple[str, str]:
    """``(dtype, reason)``: ``auto`` goes through the probe; anything else is kept as set."""
    if dtype != "auto":
        return dtype, "set in the recipe"
    found = probe(device_type)
    return found["dtype"], found["why"]
