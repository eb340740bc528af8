"""Math answers (``extract: math``, ``compare: math``): math-verify where installed, our extraction as the
fallback; ``number``/``numeric`` never call it."""

from __future__ import annotations

import pytest

from instructkit.data.tasks import math_answers
from instructkit.data.tasks.answers import AnswerSpec

SPEC = AnswerSpec("math", "math")


def _score(completion: str, target: str) -> float:
    return SPEC.score(SPEC.extract_text(completion), target)


def test_math_verify_judges_what_number_extraction_cannot():
    pytest.importorskip("math_verify")
    assert math_answers.verifier().startswith("math-verify")
    assert _score("so the result is $\\boxed{\\frac{3}{4}}$", "0.75") == 1.0  # ours: last number "4"
    assert _score("The answer is 72.", "72") == 1.0
    assert _score("Natalia sold 24 in May and 48 + 24 = 72 altogether.\n#### 72", "72") == 1.0
    assert _score("The answer is $1,234.", "1234") == 1.0
    assert _score("The answer is 71.", "72") == 0.0
    assert SPEC.to_dict()["verifier"] == math_answers.verifier()


def test_no_answer_falls_back_to_our_extraction():
    pytest.importorskip("math_verify")
    assert SPEC.extract_text("I do not know") == ""
    assert _score("I do not know", "5") == 0.0


def test_without_math_verify_our_extraction_decides(monkeypatch):
    monkeypatch.setattr(math_answers, "verifier", lambda: None)
    assert math_answers.extract("\\boxed{3}") is None and math_answers.equal("3", ["3"]) is None
    assert _score("so the result is $\\boxed{\\frac{3}{4}}$", "0.75") == 0.0  # last number: 4
    assert _score("The answer is $1,234.", "1234") == 1.0
    assert SPEC.to_dict()["verifier"] == "instructkit"


def test_other_comparisons_are_untouched():
    spec = AnswerSpec("first_line", "normalized_text")
    assert "verifier" not in spec.to_dict()
    assert spec.extract_text("\\boxed{3}\nmore") == "\\boxed{3}"


def test_runs_off_the_main_thread():
    pytest.importorskip("math_verify")
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as ex:
        assert ex.submit(_score, "\\boxed{\\frac{1}{2}}", "0.5").result() == 1.0


def test_one_spelling_per_number_so_votes_agree():
    pytest.importorskip("math_verify")
    assert {SPEC.extract_text(t) for t in ("so $990.00", "The answer is 990.", "#### 990")} == {"990"}
    assert SPEC.extract_text("\\boxed{\\frac{3}{4}}") == "3/4" and SPEC.extract_text("it is 0.50") == "0.5"


def test_number_numeric_is_what_the_task_declares_even_with_math_verify_installed():
    pytest.importorskip("math_verify")
    spec = AnswerSpec("number", "numeric")
    assert spec.score(spec.extract_text("so the result is $\\boxed{\\frac{3}{4}}$"), "0.75") == 0.0  # last number 4
    assert spec.score(spec.extract_text("so he has 9 * 6"), "54") == 0.0  # math-verify: 1 (the expression)
    assert _score("so he has 9 * 6", "54") == 1.0
    assert "verifier" not in spec.to_dict()
