"""``dtype: auto`` picks by a measured, cached probe at the training shapes; a decision taken under load is
measured again; fp32 where bf16 is slow."""

from __future__ import annotations

import json

import pytest
import torch

from instructkit.models import dtype as dt


@pytest.fixture()
def fresh(tmp_path, monkeypatch):
    monkeypatch.setenv("INSTRUCTKIT_CACHE", str(tmp_path))
    monkeypatch.setattr(dt, "load_per_core", lambda: 0.1)  # a quiet machine unless a test says otherwise
    dt.probe.cache_clear()
    yield tmp_path
    dt.probe.cache_clear()


def fake_gemms(monkeypatch, fp32: float, bf16: float) -> list:
    calls = []

    def fake(dtype, tokens=dt.DEFAULT_TOKENS, shapes=dt.DEFAULT_SHAPES, reps=2, ops=("fwd", "dgrad", "wgrad")):
        calls.append((dtype, tokens, tuple(ops)))
        return fp32 if dtype == torch.float32 else bf16

    monkeypatch.setattr(dt, "gemm_seconds", fake)
    return calls


@pytest.mark.parametrize("fp32, bf16, picked", [(1.0, 0.4, "bfloat16"), (1.0, 30.0, "float32"), (1.0, 0.9, "float32")])
def test_auto_picks_by_measured_speed_and_caches_per_machine(fresh, monkeypatch, fp32, bf16, picked):
    calls = fake_gemms(monkeypatch, fp32, bf16)
    got, why = dt.resolve_dtype("auto", "cpu")
    assert got == picked and "bf16 training GEMMs" in why
    n = len(calls)
    dt.probe.cache_clear()  # a new process: the disk cache answers, no GEMM is timed again
    assert dt.resolve_dtype("auto", "cpu")[0] == picked and len(calls) == n
    entry = list(json.loads((fresh / "dtype_probe.json").read_text()).values())[0]
    assert entry["dtype"] == picked and entry["load_per_core"] == 0.1


def test_probe_runs_at_the_training_tokens_not_256(fresh, monkeypatch):
    calls = fake_gemms(monkeypatch, 1.0, 0.4)
    dt.resolve_dtype("auto", "cpu")
    assert {c[1] for c in calls} == {dt.DEFAULT_TOKENS} and dt.DEFAULT_TOKENS >= 2048
    assert any(c[2] == ("fwd", "dgrad", "wgrad") for c in calls)  # the full training mix, not one GEMM
    dt.resolve_dtype("auto", "cpu", tokens=4096)  # another step size: its own measurement and cache entry
    assert 4096 in {c[1] for c in calls}
    assert len(json.loads((fresh / "dtype_probe.json").read_text())) == 2


def test_slow_bf16_is_ruled_out_by_one_gemm_each(fresh, monkeypatch):
    calls = fake_gemms(monkeypatch, 1.0, 30.0)
    assert dt.resolve_dtype("auto", "cpu")[0] == "float32"
    assert len(calls) == 2 and all(c[2] == ("fwd",) for c in calls)


def test_decision_taken_under_load_is_measured_again(fresh, monkeypatch):
    calls = fake_gemms(monkeypatch, 1.0, 1.0)  # under load bf16 looked no faster
    monkeypatch.setattr(dt, "load_per_core", lambda: 7.5)
    assert dt.resolve_dtype("auto", "cpu")[0] == "float32"
    n = len(calls)
    # quiet now: the loaded decision is not trusted, the probe runs again and its result replaces it
    dt.probe.cache_clear()
    monkeypatch.setattr(dt, "load_per_core", lambda: 0.2)
    calls2 = fake_gemms(monkeypatch, 1.0, 0.4)
    found = dt.probe("cpu")
    assert found["dtype"] == "bfloat16" and calls2 and "7.5" in found["reprobed"]
    # taken quietly: the next process trusts it, whatever the load now
    dt.probe.cache_clear()
    calls3 = fake_gemms(monkeypatch, 1.0, 1.0)
    assert dt.resolve_dtype("auto", "cpu")[0] == "bfloat16" and not calls3 and n


def test_loaded_decision_is_kept_while_the_machine_is_no_quieter(fresh, monkeypatch):
    fake_gemms(monkeypatch, 1.0, 1.0)
    monkeypatch.setattr(dt, "load_per_core", lambda: 5.0)
    dt.resolve_dtype("auto", "cpu")
    dt.probe.cache_clear()
    monkeypatch.setattr(dt, "load_per_core", lambda: 6.0)  # busier than when it was measured: no better probe now
    calls = fake_gemms(monkeypatch, 1.0, 0.4)
    assert dt.resolve_dtype("auto", "cpu")[0] == "float32" and not calls
    dt.probe.cache_clear()
    monkeypatch.setattr(dt, "load_per_core", lambda: 3.0)  # quieter (still loaded): measured again
    assert dt.resolve_dtype("auto", "cpu")[0] == "bfloat16" and calls


def test_entry_without_a_recorded_load_is_measured_again(fresh, monkeypatch):
    key = dt._cpu_key(dt.DEFAULT_TOKENS)
    (fresh / "dtype_probe.json").write_text(json.dumps({key: {"dtype": "float32", "why": "old"}}))
    calls = fake_gemms(monkeypatch, 1.0, 0.4)
    assert dt.resolve_dtype("auto", "cpu")[0] == "bfloat16" and calls


def test_explicit_dtype_is_kept(fresh):
    assert dt.resolve_dtype("float32") == ("float32", "set in the recipe")


def test_help_text_says_what_auto_does():
    from instructkit.config.model import ModelConfig

    doc = ModelConfig.model_fields["dtype"].description
    assert "probe" in doc and "load" in doc and "1.3x" in doc


def test_real_probe_runs_and_says_why(fresh):
    found = dt.probe("cpu", 256)  # small M keeps the real probe fast in the suite
    assert found["dtype"] in ("float32", "bfloat16") and found["bf16_speedup"] > 0
