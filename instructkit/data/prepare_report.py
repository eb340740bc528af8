"""The counts of one prepare run (:class:`PrepareReport`): what was read, kept, skipped, dropped, truncated."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from instructkit.data.readers import SkipReport
from instructkit.errors import DataError


@dataclass
class PrepareReport:
    """Counts of one prepare run: ``read == examples + skipped.total + dropped_no_trained + dropped_too_long``."""

    read: int = 0                 # records read from the files (good or bad); in-memory: conversations given
    examples: int = 0             # rows in the dataset (kept)
    tokens: int = 0
    trained_tokens: int = 0
    truncated: int = 0            # kept, but cut to max_length (right: the end; left_prompt: the start)
    dropped_no_trained: int = 0   # no trained token left (e.g. truncated away): dropped, always counted
    dropped_too_long: int = 0     # longer than max_length with truncate=drop
    skipped: SkipReport = field(default_factory=SkipReport)   # records the reader/renderer rejected
    dropped: SkipReport = field(default_factory=SkipReport)   # the drops, by reason, with located examples
    dropped_lengths: list[int] = field(default_factory=list)  # full token length of every dropped example
    truncate: str = "right"
    drops_path: str | None = None  # drops.jsonl in the cache folder: every drop, located
    fingerprint: str = ""
    cache_path: str | None = None
    cached: bool = False
    seconds: float = 0.0

    @property
    def trained_share(self) -> float:
        return self.trained_tokens / self.tokens if self.tokens else 0.0

    @property
    def dropped_total(self) -> int:
        return self.dropped_no_trained + self.dropped_too_long

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["skipped"] = self.skipped.to_dict()
        d["dropped"] = self.dropped.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PrepareReport":
        d = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        d["skipped"] = SkipReport.from_dict(d.get("skipped", {}))
        d["dropped"] = SkipReport.from_dict(d.get("dropped", {}))
        return cls(**d)

    def summary(self) -> str:
        src = f"cache hit {self.cache_path}" if self.cached else f"{self.seconds:.1f} s"
        drops = f"{self.dropped_no_trained} dropped with no trained token"
        if self.dropped_too_long or self.truncate == "drop":
            drops += f", {self.dropped_too_long} dropped as too long"
        return (f"{self.read} read: {self.examples} kept, {self.skipped.total} skipped, {drops}; "
                f"{self.truncated} truncated (truncate: {self.truncate}); "
                f"{self.tokens} tokens, {self.trained_share:.1%} trained; {src}")

    def drop(self, err: DataError, length: int) -> None:
        if err.reason == "too_long":
            self.dropped_too_long += 1
        else:
            self.dropped_no_trained += 1
        self.dropped.add(err)
        self.dropped_lengths.append(length)

