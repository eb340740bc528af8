"""``dtype: auto`` picks by a measured, cached probe and falls back to fp32 where bf16 is slow."""

from __future__ import annotations

import json

import pytest
import torch

from instructkit.models import dtype as dt


@pytest.fixture()
def fresh(tmp_path, monkeypatch):
    monkeypatch.setenv("INSTRUCTKIT_CACHE", str(tmp_path))
    dt.probe.cache_clear()
    yield tmp_path
    dt.probe.cache_clear()


@pytest.mark.parametrize("fp32, bf16, picked", [(1.0, 0.4, "bfloat16"), (1.0, 30.0, "float32"), (1.0, 0.9, "float32")])
def test_auto_picks_by_measured_speed_and_caches_per_machine(fresh, monkeypatch, fp32, bf16, picked):
    calls = []

    def fake(dtype, reps=3, **_):
        calls.append(dtype)
        return fp32 if dtype == torch.float32 else bf16

    monkeypatch.setattr(dt, "gemm_seconds", fake)
    got, why = dt.resolve_dtype("auto", "cpu")
    assert got == picked and "bf16 GEMM" in why
    n = len(calls)
    dt.probe.cache_clear()  # a new process: the disk cache answers, no GEMM is timed again
    assert dt.resolve_dtype("auto", "cpu")[0] == picked and len(calls) == n
    assert list(json.loads((fresh / "dtype_probe.json").read_text()).values())[0]["dtype"] == picked


def test_explicit_dtype_is_kept(fresh):
    assert dt.resolve_dtype("float32") == ("float32", "set in the recipe")


def test_real_probe_runs_and_says_why(fresh):
    found = dt.probe("cpu")
    assert found["dtype"] in ("float32", "bfloat16") and found["bf16_speedup"] > 0
