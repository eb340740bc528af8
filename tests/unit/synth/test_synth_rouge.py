"""The fast ROUGE-L filter makes exactly rouge-score's decisions (tokenisation, LCS, float F, threshold)."""

import random

import pytest

from instructkit.synth.rouge import RougeLFilter, lcs_length, rouge_l_f, rouge_tokens

rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")
SCORER = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
VOCAB = "write a poem about the sea sky given list of three items explain why how to cook rice, code! Ünïcode 42".split()


def _text(rng):
    return " ".join(rng.choice(VOCAB) for _ in range(rng.randint(0, 18)))


def test_tokens_lcs_and_f_match_rouge_score():
    rng = random.Random(0)
    for _ in range(2000):
        a, b = _text(rng), _text(rng)
        ta, tb = rouge_tokens(a), rouge_tokens(b)
        assert ta == SCORER._tokenizer.tokenize(a)
        assert rouge_l_f(lcs_length(ta, tb), len(ta), len(tb)) == SCORER.score(a, b)["rougeL"].fmeasure


def _reference(texts, thr, inclusive=True):
    kept = []
    for t in texts:
        scores = [SCORER.score(k, t)["rougeL"].fmeasure for k in kept]
        if not any((s >= thr) if inclusive else (s > thr) for s in scores):
            kept.append(t)
    return kept


@pytest.mark.parametrize("inclusive", [True, False])
def test_filter_keeps_exactly_the_reference_set(inclusive):
    rng = random.Random(1)
    base = [_text(rng) for _ in range(60)]
    # near duplicates at many similarity levels, including exact 0.7 ties ("a b c d e f g" vs 3 words changed)
    texts = []
    for t in base:
        texts.append(t)
        w = t.split()
        for _ in range(2):
            v = list(w)
            for _ in range(rng.randint(0, 4)):
                if v:
                    v[rng.randrange(len(v))] = rng.choice(VOCAB)
            texts.append(" ".join(v))
    texts += ["one two three four five six seven eight nine ten", "one two three four five six seven x y z"]
    f = RougeLFilter(0.7, inclusive=inclusive)
    got = [t for t in texts if f.offer(t).keep]
    assert got == _reference(texts, 0.7, inclusive)
    assert 0 < len(got) < len(texts)
    assert f.exact_lcs < len(texts) * len(got) / 4  # the index prunes most pairs


def test_tie_at_threshold_is_dropped_inclusive_only():
    a = "one two three four five six seven eight nine ten"
    b = "one two three four five six seven x y z"  # LCS 7 of 10/10 -> F = 0.7
    assert SCORER.score(a, b)["rougeL"].fmeasure == pytest.approx(0.7)
    f = RougeLFilter(0.7)
    f.add(a)
    d = f.check(b)
    assert not d.keep and d.most_similar == 0
    g = RougeLFilter(0.7, inclusive=False)
    g.add(a)
    assert g.check(b).keep
