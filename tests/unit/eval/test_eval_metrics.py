"""Metrics on hand-made cases: rank classification, EM, F1, ROUGE-L, CoT extraction, majority vote."""

import pytest

from instructkit.data.tasks import metrics as M


def test_rank_classification_norms():
    lps, ntok, nchr = [-4.0, -5.0], [1, 5], [2, 20]
    assert M.rank_classification(lps, ntok, nchr, "sum") == 0
    assert M.rank_classification(lps, ntok, nchr, "token") == 1   # -1.0/token beats -4.0/token
    assert M.rank_classification(lps, ntok, nchr, "char") == 1    # -0.25/char beats -2.0/char
    assert M.rank_classification([-1.0, -1.0], norm="sum") == 0     # ties -> first
    with pytest.raises(ValueError):
        M.rank_classification(lps, norm="bytes")


def test_exact_match_and_f1():
    assert M.exact_match("The Cat!", "cat") == 1.0
    assert M.exact_match("a dog", ["cat", "Dog."]) == 1.0
    assert M.exact_match("dog", "cat") == 0.0
    assert M.f1("the big red cat", "red cat") == pytest.approx(2 * (2 / 3) * 1 / (2 / 3 + 1))
    assert M.f1("", "") == 1.0 and M.f1("x", "") == 0.0


def test_rouge_l():
    # LCS of "the cat sat on the mat" / "the cat on the mat" = 5
    p, r = 5 / 6, 5 / 5
    assert M.rouge_l("the cat sat on the mat", "the cat on the mat") == pytest.approx(2 * p * r / (p + r))
    assert M.rouge_l("abc", "xyz") == 0.0
    assert M.rouge_l("Same Words", "same words") == 1.0


@pytest.mark.parametrize("text,kind,want", [
    ("Let's see. 2+2=4. So the answer is (B).", "text", "(B)"),
    ("The answer is False.", "text", "False"),
    ("The final answer is: 12 apples.\nMore text", "text", "12 apples"),
    ("She has 3 + 4 = 7 eggs.\n#### 1,234", "number", "1234"),
    ("First 5 then 10 so total is 15.", "number", "15"),
    ("So the answer is $18.00.", "number", "18"),
    ("We get -3. The answer is -3.", "number", "-3"),
    ("no number here", "number", ""),
    ("plain first line\nsecond", "text", "plain first line"),
])
def test_extract_answer(text, kind, want):
    assert M.extract_answer(text, kind) == want


def test_majority_vote_deterministic_ties():
    assert M.majority_vote(["3", "4", "4", "3", "5"]) == "3"       # tie 3 vs 4: first seen wins
    assert M.majority_vote(["", "7", "8", "8"]) == "8"
    assert M.majority_vote(["", ""]) == ""


def test_mean_stderr():
    m, se = M.mean_stderr([1.0, 0.0, 1.0, 0.0])
    assert m == 0.5 and se == pytest.approx((1 / 3) ** 0.5 / 2)
