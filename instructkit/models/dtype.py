"""``dtype: auto``: the fastest compute dtype this machine really has, measured at the training shapes and cached.

Why measured, not read from a flag list: CPUs differ. One measured here has ``avx512_bf16`` and runs a
bf16 GEMM mix 2.2x faster than fp32; another (Zen 3, no bf16 instructions) runs bf16 8-70x SLOWER,
because torch falls back to converting every tile. The probe times the three GEMMs a training step runs per
linear layer (forward ``x @ W^T``, input gradient ``dY @ W``, weight gradient ``dY^T @ X``) at the model's
linear shapes and a training step's token count (M = 2048, ``train.pack_tokens``' default - not a toy
M=256, where bf16 packing overheads dominate; every caller in a process uses the same M, so they agree), in
fp32 and bf16; bf16 is picked when it is at least ``MIN_SPEEDUP`` times faster. The decision is cached per machine (CPU model, flags, torch version, threads, M)
with the 1-minute load average it was taken under: a decision taken on a loaded machine (load above
``LOADED_PER_CORE`` per core) is measured again by the next process that finds the machine quieter than it
was then, and the new measurement replaces it (~1-6 s at M=2048).
On CUDA: bf16 on GPUs with native bf16 (compute capability >= 8), fp16 below (:func:`cuda_choice`).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from functools import lru_cache
from typing import Any, Sequence

#: bf16 must beat fp32 by this factor to be picked (it costs precision)
MIN_SPEEDUP = 1.3
#: a cached decision taken with the 1-minute load average above this many runnable tasks per core is re-probed
LOADED_PER_CORE = 0.5
#: tokens per training step the probe uses when the caller does not say (``train.pack_tokens``' default)
DEFAULT_TOKENS = 2048
#: (in, out) of SmolLM2-135M's linear layers (the default model): q/o, gate/up, down, k/v
DEFAULT_SHAPES: tuple[tuple[int, int], ...] = ((576, 576), (576, 1536), (1536, 576), (576, 192))


def _cpu_key(tokens: int) -> str:
    import torch

    info = ""
    try:
        with open("/proc/cpuinfo") as f:
            lines = [ln for ln in f.read().splitlines() if ln.startswith(("model name", "flags"))]
        info = "\n".join(sorted(set(lines)))
    except OSError:
        import platform
        info = platform.processor()
    raw = f"{info}|{torch.__version__}|{torch.get_num_threads()}|M={tokens}"
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def load_per_core() -> float:
    """1-minute load average per core (0.0 where the OS does not say)."""
    try:
        return os.getloadavg()[0] / (os.cpu_count() or 1)
    except OSError:
        return 0.0


def gemm_seconds(dtype: Any, tokens: int = DEFAULT_TOKENS, shapes: Sequence[tuple[int, int]] = DEFAULT_SHAPES,
                 reps: int = 2, ops: Sequence[str] = ("fwd", "dgrad", "wgrad")) -> float:
    """Best-of-``reps`` time of one training step's GEMMs (``ops`` of every shape) at M = ``tokens``."""
    import torch

    g = torch.Generator().manual_seed(0)
    fns = []
    for fin, fout in shapes:
        x = torch.randn(tokens, fin, generator=g).to(dtype)
        w = torch.randn(fout, fin, generator=g).to(dtype)
        dy = torch.randn(tokens, fout, generator=g).to(dtype)
        table = {"fwd": lambda x=x, w=w: torch.nn.functional.linear(x, w), "dgrad": lambda dy=dy, w=w: dy @ w,
                 "wgrad": lambda dy=dy, x=x: dy.t() @ x}
        fns += [table[o] for o in ops]

    def once() -> None:
        for f in fns:
            f()
    once()  # warm-up (kernel selection, allocation)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        once()
        best = min(best, time.perf_counter() - t)
    return best


def _probe_cpu(tokens: int) -> dict[str, Any]:
    import torch

    # a very slow (emulated) bf16 path can take seconds: one forward GEMM per shape rules it out first
    fwd32 = gemm_seconds(torch.float32, tokens, reps=1, ops=("fwd",))
    fwd16 = gemm_seconds(torch.bfloat16, tokens, reps=1, ops=("fwd",))
    if fwd16 > 1.5 * fwd32:
        fp32, bf16 = fwd32, fwd16
    else:
        fp32, bf16 = gemm_seconds(torch.float32, tokens), gemm_seconds(torch.bfloat16, tokens)
    speedup = fp32 / max(bf16, 1e-12)
    pick = "bfloat16" if speedup >= MIN_SPEEDUP else "float32"
    load = load_per_core()
    return {"dtype": pick, "bf16_speedup": round(speedup, 2), "tokens": tokens, "load_per_core": round(load, 2),
            "why": f"auto: bf16 training GEMMs {speedup:.2f}x the speed of fp32 on this CPU at M={tokens} "
                   f"({'>=' if pick == 'bfloat16' else '<'} {MIN_SPEEDUP}x needed; measured at load "
                   f"{load:.2f}/core)"}


def _stale(entry: dict[str, Any]) -> bool:
    """Taken under load (or by an older version that did not record the load) and the machine is quieter now:
    measure again. Under the same or a higher load a new probe would be no better, so the entry is kept."""
    then = entry.get("load_per_core", float("inf"))
    return then > LOADED_PER_CORE and load_per_core() < then


@lru_cache(maxsize=8)
def probe(device_type: str = "cpu", tokens: int = DEFAULT_TOKENS) -> dict[str, Any]:
    """``{"dtype", "why", ...}`` for ``device_type``; CPU results cached on disk per machine and M."""
    if device_type == "cuda":
        return cuda_choice()
    from instructkit.models.paths import cache_dir

    path = cache_dir() / "dtype_probe.json"
    key = _cpu_key(tokens)
    try:
        cached = json.loads(path.read_text())
    except (OSError, ValueError):
        cached = {}
    if key in cached and not _stale(cached[key]):
        return {**cached[key], "cached": True}
    found = _probe_cpu(tokens)
    if key in cached:
        found["reprobed"] = f"the cached decision was taken at load {cached[key].get('load_per_core')}/core"
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


def resolve_dtype(dtype: str, device_type: str = "cpu", tokens: int | None = None) -> tuple[str, str]:
    """``(dtype, reason)``: ``auto`` goes through the probe (at ``tokens`` per step); anything else is kept."""
    if dtype != "auto":
        return dtype, "set in the recipe"
    found = probe(device_type, int(tokens or DEFAULT_TOKENS))
    return found["dtype"], found["why"]
