"""Fast ROUGE-L novelty filter for self-instruct: the same decisions as ``rouge-score``, much faster.

Self-instruct keeps a new instruction only if its ROUGE-L F-measure against *every* kept instruction
is below a threshold (0.7). Done naively that is O(n^2) LCS computations (the original code runs a
process pool over ``rouge_score``). Here:

* tokenisation is ``rouge_score``'s default (lowercase, non ``[a-z0-9]`` -> space, split, no stemmer);
* ROUGE-L F = 2*LCS/(|a|+|b|) and LCS <= unigram overlap (ROUGE-1's multiset intersection), so an
  inverted index of token counts gives, for all kept instructions at once (numpy ``bincount``), an
  upper bound on the F-measure; only candidates whose bound reaches the threshold get an exact LCS;
* the exact LCS is the bit-parallel algorithm (Allison-Dix/Hyyro) on Python big ints, and the final
  F-measure is computed with ``rouge_score``'s own float formula, so borderline ties decide identically.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def rouge_tokens(text: str) -> list[str]:
    """``rouge_score.tokenize.tokenize(text, None)``: the default ROUGE tokeniser without stemming."""
    return [t for t in _NON_ALNUM.sub(" ", text.lower()).split() if t]


def lcs_length(a: list, b: list) -> int:
    """Length of the longest common subsequence (bit-parallel, O(len(b)) big-int operations)."""
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return 0
    masks: dict = {}
    for i, tok in enumerate(a):
        masks[tok] = masks.get(tok, 0) | (1 << i)
    full = (1 << len(a)) - 1
    v = full
    for tok in b:
        m = masks.get(tok)
        if m is None:
            continue
        u = v & m
        v = ((v + u) | (v - u)) & full
    return len(a) - bin(v).count("1")


def rouge_l_f(lcs: int, n_target: int, n_pred: int) -> float:
    """``rouge_score``'s F-measure from an LCS length (its exact float operations)."""
    if not n_target or not n_pred:
        return 0.0
    p, r = lcs / n_pred, lcs / n_target
    return 2 * p * r / (p + r) if p + r > 0 else 0.0


class _Postings:
    """Growable (doc id, count) arrays of one token."""

    __slots__ = ("docs", "counts", "n")

    def __init__(self) -> None:
        self.docs = np.empty(4, dtype=np.int32)
        self.counts = np.empty(4, dtype=np.int32)
        self.n = 0

    def add(self, doc: int, count: int) -> None:
        if self.n == len(self.docs):
            self.docs = np.resize(self.docs, 2 * self.n)
            self.counts = np.resize(self.counts, 2 * self.n)
        self.docs[self.n], self.counts[self.n] = doc, count
        self.n += 1


@dataclass
class Decision:
    keep: bool
    score: float            # the highest ROUGE-L F found (exact for every candidate that could reach the threshold)
    most_similar: int       # index of that kept text, -1 if none


class RougeLFilter:
    """Incremental pool: ``check(text)`` says whether ``text`` is novel; ``add`` keeps it.

    ``drop_at`` is the F-measure at or above which a text counts as a near duplicate
    (``inclusive=False`` drops only strictly above it, as the Alpaca script's ``> 0.7`` does).
    """

    def __init__(self, threshold: float = 0.7, inclusive: bool = True):
        self.threshold, self.inclusive = threshold, inclusive
        self.texts: list[str] = []
        self.tokens: list[list[str]] = []
        self.lengths = np.zeros(1024, dtype=np.int32)
        self.index: dict[str, _Postings] = {}
        self.exact_lcs = 0  # exact LCS computations done (the rest were pruned)

    def __len__(self) -> int:
        return len(self.texts)

    def _hit(self, f: float) -> bool:
        return f >= self.threshold if self.inclusive else f > self.threshold

    def check(self, text: str) -> Decision:
        toks = rouge_tokens(text)
        n = len(self.texts)
        if not n or not toks:
            return Decision(True, 0.0, -1)  # rouge_score gives F=0 for an empty side
        counts: dict[str, int] = {}
        for t in toks:
            counts[t] = counts.get(t, 0) + 1
        docs, weights = [], []
        for t, c in counts.items():
            p = self.index.get(t)
            if p is not None:
                docs.append(p.docs[: p.n])
                weights.append(np.minimum(p.counts[: p.n], c))
        if not docs:
            return Decision(True, 0.0, -1)
        overlap = np.bincount(np.concatenate(docs), weights=np.concatenate(weights), minlength=n)
        lens = self.lengths[:n]
        # upper bound of F: 2*min(overlap, |a|, |b|)/(|a|+|b|); a small margin keeps float ties on the exact side
        bound = 2.0 * np.minimum(overlap, np.minimum(lens, len(toks))) / (lens + len(toks))
        cand = np.nonzero(bound >= self.threshold - 1e-9)[0]
        best, best_i = 0.0, -1
        if len(cand):
            for i in cand[np.argsort(-bound[cand], kind="stable")]:
                ref = self.tokens[i]
                self.exact_lcs += 1
                f = rouge_l_f(lcs_length(ref, toks), len(ref), len(toks))
                if f > best:
                    best, best_i = f, int(i)
                if self._hit(f):
                    return Decision(False, f, int(i))
        return Decision(True, best, best_i)

    def add(self, text: str) -> None:
        toks = rouge_tokens(text)
        doc = len(self.texts)
        self.texts.append(text)
        self.tokens.append(toks)
        if doc == len(self.lengths):
            self.lengths = np.resize(self.lengths, 2 * doc)
        self.lengths[doc] = len(toks)
        counts: dict[str, int] = {}
        for t in toks:
            counts[t] = counts.get(t, 0) + 1
        for t, c in counts.items():
            p = self.index.get(t)
            if p is None:
                p = self.index[t] = _Postings()
            p.add(doc, c)

    def offer(self, text: str) -> Decision:
        """``check`` and, when novel, ``add``."""
        d = self.check(text)
        if d.keep:
            self.add(text)
        return d
