"""The benches' shared pieces (issue #26): one optimizer-step clock for every contender, interleaved rounds
with median and spread, the header every bench prints."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))
import common  # noqa: E402


@pytest.mark.parametrize("kw", [{"fused": True}, {"foreach": False}])
def test_step_clock_times_every_optimizer_step_whatever_the_optimizer(kw):
    p = torch.nn.Parameter(torch.zeros(4))
    opt = torch.optim.AdamW([p], lr=0.1, **kw)
    clock = common.StepClock()
    clock.start()
    for _ in range(3):
        p.grad = torch.ones(4)
        opt.step()
    clock.stop()
    p.grad = torch.ones(4)
    opt.step()  # after stop(): not counted
    assert len(clock.step_s) == 3 and all(s >= 0 for s in clock.step_s)
    assert abs(sum(clock.step_s) - (clock.stamps[-1] - clock.t0)) < 1e-9


def test_rounds_interleave_ours_and_peer_and_report_median_and_spread():
    order = []
    runs = common.interleaved(["ours", "peer"], 3, lambda c, r: order.append((c, r)) or {"x": r + 1})
    assert order == [("ours", 0), ("peer", 0), ("ours", 1), ("peer", 1), ("ours", 2), ("peer", 2)]
    assert [r["round"] for r in runs["ours"]] == [1, 2, 3]
    sp = common.spread([10.0, None, 14.0, 12.0])  # None: an errored round, left out
    assert sp["median"] == 12.0 and sp["n"] == 3 and sp["spread"] == pytest.approx(4 / 12)


def test_header_names_cpu_dtype_threads_and_load():
    h = common.header("bfloat16", 1)
    assert "CPU " in h and "dtype bfloat16" in h and "1 torch threads" in h and "load average" in h
