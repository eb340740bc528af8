"""Metrics: rank classification, exact match, token F1, ROUGE-L, CoT answer extraction, majority vote.

Normalisation for exact match / F1 follows SQuAD (lower case, drop punctuation and articles, squeeze
whitespace) except that numbers keep their sign and decimal point; how each task extracts and compares
its answers is declared per task (:mod:`instructkit.data.tasks.answers`). Rank classification reports lm-eval's three flavours: ``acc`` (sum of log-probs),
``acc_norm`` (log-prob per character, lm-eval's acc_norm) and ``acc_token`` (log-prob per token).
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Callable, Sequence

from instructkit.data.tasks import answers as A
from instructkit.data.tasks.rouge import rouge_l  # noqa: F401  (a metric as well as a comparator)

def normalize(text: str) -> str:
    """SQuAD normalisation that keeps a number's sign and decimal point (see :mod:`.answers`)."""
    return A.normalize(text)


def exact_match(prediction: str, target: str | Sequence[str]) -> float:
    """Normalised text match; numbers compare as numbers ('35' != '3.5', '5' != '-5'); an empty
    prediction never matches, and a target that normalises to nothing ('(A)') is compared as written."""
    if not str(prediction).strip():
        return 0.0
    return A.compare_normalized(prediction, target)


def f1(prediction: str, target: str | Sequence[str]) -> float:
    """Token-overlap F1 (SQuAD, number-preserving normalisation); the best over several targets."""
    return A.compare_f1(prediction, target)


# -- rank classification ---------------------------------------------------------------------------
NORMALISATIONS: dict[str, Callable[[float, int, int], float]] = {
    "sum": lambda lp, n_tok, n_chr: lp,
    "token": lambda lp, n_tok, n_chr: lp / max(n_tok, 1),
    "char": lambda lp, n_tok, n_chr: lp / max(n_chr, 1),
}


def rank_classification(logprobs: Sequence[float], n_tokens: Sequence[int] | None = None,
                        n_chars: Sequence[int] | None = None, norm: str = "sum") -> int:
    """Index of the highest-scoring choice (ties: the first, as argmax)."""
    if norm not in NORMALISATIONS:
        raise ValueError(f"norm must be one of {', '.join(NORMALISATIONS)}")
    n_tokens = n_tokens or [1] * len(logprobs)
    n_chars = n_chars or [1] * len(logprobs)
    scores = [NORMALISATIONS[norm](lp, t, c) for lp, t, c in zip(logprobs, n_tokens, n_chars)]
    return max(range(len(scores)), key=lambda i: (scores[i], -i))


# -- chain-of-thought answer extraction ------------------------------------------------------------
def extract_answer(text: str, kind: str = "text") -> str:
    """The answer a CoT completion states (``kind``: text | number | letter); see :mod:`.answers`.

    The final-answer span is the text after the last ``#### ``, ``So the answer is`` or ``The answer
    is`` up to the end of that sentence ("The answer is 42. Next we" -> "42"), else the first line.
    """
    if kind == "number":
        return A.extract_number(text)
    if kind == "letter":
        return A.extract_letter(text)
    return A.first_line(text).rstrip(".").strip()


def majority_vote(answers: Sequence[str]) -> str:
    """The most frequent non-empty answer; ties broken by first appearance (deterministic)."""
    valid = [a for a in answers if a != ""]
    if not valid:
        return ""
    counts = Counter(valid)
    top = max(counts.values())
    return next(a for a in valid if counts[a] == top)


def mean_stderr(values: Sequence[float]) -> tuple[float, float]:
    """Mean and its standard error (sample std / sqrt(n), as lm-eval)."""
    n = len(values)
    if n == 0:
        return float("nan"), float("nan")
    mean = sum(values) / n
    if n < 2:
        return mean, 0.0
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


METRICS: dict[str, Callable[[str, str | Sequence[str]], float]] = {
    "exact_match": exact_match, "f1": f1, "rouge_l": rouge_l,
}
