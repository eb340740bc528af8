"""The narrow interface evaluation uses to talk to models.

Every backend (a local HF model, an OpenAI-compatible endpoint, a scripted judge in tests) implements
two methods, so task metrics, CoT, self-consistency and the LLM judge plug in the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence, runtime_checkable


@dataclass
class LoglikelihoodRequest:
    """Score ``continuation`` given ``context`` (both plain text; the backend tokenizes).

    Tokenization follows lm-evaluation-harness: context and continuation are tokenized so that the
    continuation's tokens are exactly those the model must predict (context + continuation encoded
    whole, the split at the context's token length, trailing context spaces moved to the continuation).
    """

    context: str
    continuation: str
    #: opaque caller key (task id, doc id, choice index) carried back unchanged
    key: Any = None


@dataclass
class LoglikelihoodResult:
    logprob: float          # sum of log p(continuation tokens | context)
    is_greedy: bool         # every continuation token is the argmax
    n_tokens: int           # continuation length in tokens (for per-token normalisation)
    n_chars: int            # continuation length in characters (lm-eval's acc_norm uses bytes/chars)


@dataclass
class GenerateRequest:
    """Continue ``prompt`` (plain text), or a chat given as ``messages`` (backend applies its template)."""

    prompt: str | None = None
    messages: list[dict[str, str]] | None = None
    max_new_tokens: int = 256
    temperature: float = 0.0         # 0 = greedy
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    n: int = 1                       # samples per request (self-consistency)
    seed: int | None = None
    key: Any = None


@dataclass
class GenerateResult:
    texts: list[str]                 # n completions, stop strings removed
    n_tokens: list[int]              # generated tokens per completion
    #: why each completion ended (stop | length), where the backend knows it
    finish_reasons: list[str] | None = None


@runtime_checkable
class LM(Protocol):
    name: str

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]) -> list[LoglikelihoodResult]: ...

    def generate(self, requests: Sequence[GenerateRequest]) -> list[GenerateResult]: ...
