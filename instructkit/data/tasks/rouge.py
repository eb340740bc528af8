"""ROUGE-L F-measure (Lin 2004) on lower-cased alphanumeric tokens, as rouge_score's default tokenizer: a
task comparator (``compare: rouge_l``) and a metric."""

from __future__ import annotations

import re
from typing import Sequence


def _lcs(a: Sequence[str], b: Sequence[str]) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, start=1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


def rouge_l(prediction: str, target: str | Sequence[str]) -> float:
    """ROUGE-L F-measure on lower-cased alphanumeric tokens (as rouge_score's default tokenizer)."""
    targets = [target] if isinstance(target, str) else list(target)
    p = re.findall(r"[a-z0-9]+", str(prediction).lower())
    best = 0.0
    for t in targets:
        g = re.findall(r"[a-z0-9]+", str(t).lower())
        if not p or not g:
            continue
        lcs = _lcs(p, g)
        if lcs:
            prec, rec = lcs / len(p), lcs / len(g)
            best = max(best, 2 * prec * rec / (prec + rec))
    return best
