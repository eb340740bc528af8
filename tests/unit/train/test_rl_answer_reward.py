"""The answer reward of recipes/rlvr_times.yaml (and its held-out accuracy) pays for the final number the
completion states, as the task declares (``extract: number, compare: numeric``) - never for an
unevaluated expression or an earlier number. With ``compare: numeric`` routed to math-verify, the start
model's truncated "... so he has 9 * 6" scored 1 (3 of its 48 held-out completions, docs/rl.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from instructkit.data.tasks.answers import AnswerSpec
from instructkit.train.rl.rewards import Sample, answer_reward

TIMES = Path(__file__).resolve().parents[3] / "recipes" / "tasks" / "times_word.yaml"

# (completion, reward) for "Pablo has 9 bags with 6 shells in each bag" -> gold 54
CASES = [
    ("Pablo has 9 bags with 6 shells each, so he has 9 * 6", 0.0),  # cut off before the product
    ("Maya has 9 bags with 6 marbles each, so she has 9 * 6 =", 0.0),
    ("9 * 6", 0.0),                                   # copying the prompt's numbers is not an answer
    ("Answer: 50 + 4", 0.0),                          # nor an unevaluated sum
    ("9 x 6 = 50, no wait 54", 1.0),                  # the final number counts...
    ("9 x 6 = 54, no wait 60", 0.0),                  # ...also when it is wrong
    ("48, 54, 60", 0.0),                              # listing candidates pays only for the last one
    ("54 or 60", 0.0),
    ("He has 54 or 60 shells.", 0.0),
    ("Number of shells = 9 * 6 = 54\nPablo has 54", 1.0),
    ("Number of shells = 9 * 6 = 54\nPablo has 5", 0.0),  # truncated mid-number: the stated answer is 5
    ("The answer is 54.", 1.0),
    ("54", 1.0),
]


def _times_spec() -> AnswerSpec:
    from instructkit.data.tasks.task import load_task
    return load_task(str(TIMES)).answer


def test_times_word_declares_the_last_number_and_runs_it():
    spec = _times_spec()
    assert spec == AnswerSpec("number", "numeric")
    assert "verifier" not in spec.to_dict()  # math-verify is not consulted, installed or not


def test_rlvr_answer_reward_on_crafted_completions():
    reward = answer_reward(_times_spec())
    got = reward([Sample("Pablo has 9 bags with 6 shells in each bag. How many shells does Pablo have?", c, "54")
                  for c, _ in CASES])
    assert list(zip([c for c, _ in CASES], got)) == [(c, want) for c, want in CASES]


def test_rl_prompts_from_the_task_carry_its_declared_spec():
    from instructkit.train.rl.prompts import from_task
    train, held, spec = from_task(str(TIMES), "t02", "", 4, 4, 0)
    assert spec == AnswerSpec("number", "numeric") and held[0].answer == "80"


def test_math_verify_pays_for_an_unevaluated_expression():
    """Why the RL task does not declare ``math``: math-verify reads the dangling product as the answer."""
    pytest.importorskip("math_verify")
    spec = AnswerSpec("math", "math")
    assert spec.score(spec.extract_text("Pablo has 9 bags with 6 shells each, so he has 9 * 6"), "54") == 1.0
