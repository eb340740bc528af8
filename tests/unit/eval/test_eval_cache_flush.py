"""A slow generative eval reaches the disk at least every flush_seconds, and an interrupted one keeps it."""

from __future__ import annotations

import time

import pytest

from instructkit.lm.api import GenerateRequest, GenerateResult
from instructkit.eval.cache import CachedLM


class SlowLM:
    name, batch_size = "slow", 2

    def __init__(self, per_request: float, cache_path, stop_at_call: int | None = None):
        self.per_request, self.path, self.stop_at = per_request, cache_path, stop_at_call
        self.calls: list[tuple[int, int]] = []  # (requests in the call, lines on disk when it started)

    def generate(self, reqs):
        lines = len(self.path.read_text().splitlines()) if self.path.is_file() else 0
        self.calls.append((len(reqs), lines))
        if self.stop_at is not None and len(self.calls) == self.stop_at:
            raise KeyboardInterrupt
        time.sleep(self.per_request * len(reqs))
        return [GenerateResult([r.prompt.upper()], [1]) for r in reqs]


def _reqs(n):
    return [GenerateRequest(prompt=f"q{i}", max_new_tokens=4) for i in range(n)]


def test_chunks_shrink_to_flush_every_n_seconds(tmp_path):
    path = tmp_path / "cache.jsonl"
    lm = SlowLM(0.01, path)
    CachedLM(lm, path, chunk_size=64, flush_seconds=0.05).generate(_reqs(30))
    sizes = [n for n, _ in lm.calls]
    # before: one call of 30 (64-request chunks) and nothing on disk until it returned
    assert sizes[0] == 2 and max(sizes) <= 6 and sum(sizes) == 30 and all(n % 2 == 0 for n in sizes)
    on_disk = [lines for _, lines in lm.calls]
    assert on_disk == sorted(on_disk) and on_disk[-1] == 30 - sizes[-1]  # results written before each next call


def test_interrupted_eval_keeps_flushed_results(tmp_path):
    path = tmp_path / "cache.jsonl"
    with pytest.raises(KeyboardInterrupt):
        CachedLM(SlowLM(0.01, path, stop_at_call=4), path, chunk_size=64, flush_seconds=0.05).generate(_reqs(30))
    kept = len(path.read_text().splitlines())
    assert kept >= 4
    again = SlowLM(0.0, path)
    clm = CachedLM(again, path, chunk_size=64, flush_seconds=0.05)
    out = clm.generate(_reqs(30))
    assert [r.texts[0] for r in out] == [f"Q{i}" for i in range(30)]
    assert clm.cached_hits["generate"] == kept and sum(n for n, _ in again.calls) == 30 - kept
