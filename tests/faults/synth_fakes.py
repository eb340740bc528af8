"""Fakes shared by the synth fault tests: the synth unit tests' scripted teacher, recording what it is asked."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "synth"))

from fake_teacher import FakeTeacher  # noqa: E402

from instructkit.lm.api import GenerateResult  # noqa: E402


class Recording(FakeTeacher):
    """The scripted teacher, keeping every request it receives."""

    def __init__(self, mode: str = "ok"):
        super().__init__(mode)
        self.requests: list = []

    def generate(self, requests):
        self.requests += list(requests)
        return super().generate(requests)


class Sampler:
    """A policy for ``synth preferences``: n distinct answers per request, a pure function of (prompt, seed,
    settings); counts the requests it answers; ``fail_after`` requests it raises (a crash mid-run)."""

    name = "sampler"
    fingerprint = "sampler-v1"

    def __init__(self, fail_after: int | None = None):
        self.requests: list = []
        self.fail_after = fail_after

    def generate(self, reqs):
        out = []
        for r in reqs:
            if self.fail_after is not None and len(self.requests) >= self.fail_after:
                raise KeyboardInterrupt("killed")
            self.requests.append(r)
            p = r.messages[-1]["content"]
            out.append(GenerateResult([f"{p} answer {k} seed {r.seed} t={r.temperature} " + "x" * k
                                       for k in range(r.n)], [1] * r.n))
        return out
