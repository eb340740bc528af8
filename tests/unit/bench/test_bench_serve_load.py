"""The pure pieces of the serve / prepare / rouge / synth benches (issue #26): percentiles, the median round,
the serve load's request plan and its per-round summary (errors, bad responses, TTFT of streamed requests)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))
import common  # noqa: E402
import serve_load  # noqa: E402


def test_percentile_interpolates_between_closest_ranks_like_numpy():
    np = pytest.importorskip("numpy")
    xs = [5.0, 1.0, 3.0, 2.0, 4.0, 10.0, 7.5]
    for p in (0, 10, 50, 90, 99, 100):
        assert common.percentile(xs, p) == pytest.approx(float(np.percentile(xs, p)))
    assert common.percentile([1, 2, 3, 4], 50) == 2.5
    assert common.percentile([], 50) is None and common.percentile([7.0], 99) == 7.0


def test_median_round_is_a_real_round_and_skips_failed_ones():
    rounds = [{"t": 3.0, "x": "a"}, {"error": "boom"}, {"t": 1.0, "x": "b"}, {"t": 2.0, "x": "c"}, {"t": None}]
    assert common.median_round(rounds, "t")["x"] == "c"
    assert common.median_round([{"t": 1.0}, {"t": 2.0}], "t")["t"] == 1.0  # lower median: an actual round
    assert common.median_round([{"error": "x"}], "t") is None
    assert common.fmt_spread(common.spread([10.0, 12.0, 14.0])) == "12.0 [10.0-14.0] spread 33%"
    assert common.fmt_spread(common.spread([None])) == "-"


def test_request_plan_mixes_streaming_and_lengths_evenly():
    plan = serve_load.request_plan(32, 20, [16, 32, 64, 128], ["p0", "p1", "p2"])
    assert len(plan) == 640 and len({r["k"] for r in plan}) == 640
    assert sum(r["stream"] for r in plan) == 320
    for mt in (16, 32, 64, 128):  # every length is asked streamed and not, equally often
        assert sum(r["max_tokens"] == mt and r["stream"] for r in plan) == 80
        assert sum(r["max_tokens"] == mt and not r["stream"] for r in plan) == 80
    assert [r["prompt"] for r in plan[:4]] == ["p0", "p1", "p2", "p0"]
    small = serve_load.request_plan(4, 1, [8, 16], ["q"])  # one request per client still mixes both
    assert {(r["stream"], r["max_tokens"]) for r in small} == {(True, 8), (False, 8), (True, 16), (False, 16)}


def test_summary_counts_errors_bad_responses_tokens_and_ttft_of_streamed_requests_only():
    recs = [{"k": 0, "stream": True, "max_tokens": 8, "prompt_tokens": 10, "latency_s": 1.0, "ttft_s": 0.2,
             "tokens": 8, "finish": "length"},
            {"k": 1, "stream": False, "max_tokens": 8, "prompt_tokens": 12, "latency_s": 3.0, "tokens": 5,
             "finish": "stop"},
            {"k": 2, "stream": False, "max_tokens": 8, "prompt_tokens": 9, "latency_s": 2.0, "tokens": 7,
             "finish": "length"},  # a length finish one token short: lost or truncated, counted bad
            {"k": 3, "stream": True, "max_tokens": 8, "prompt_tokens": 11, "error": "APIConnectionError: x"}]
    s = serve_load.summarize(recs, 4.0)
    assert s["requests"] == 4 and s["errors"] == 1 and s["error_samples"] == ["APIConnectionError: x"]
    assert s["bad_responses"] == 1 and s["bad_samples"] == [(2, "length", 7, 8)]
    assert s["completion_tokens"] == 20 and s["prompt_tokens"] == 31 and s["tokens_per_s"] == 5.0
    assert s["p50_latency_s"] == 2.0 and s["p99_latency_s"] == pytest.approx(2.98)
    assert s["p50_ttft_s"] == 0.2 and s["streamed"] == 1
