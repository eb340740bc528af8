"""LLM-as-judge, MT-Bench style: single-answer grading (1-10) and pairwise comparison.

The judge is any object with ``generate`` (:class:`instructkit.lm.api.LM`): a local model, an
OpenAI-compatible endpoint, or a scripted judge in tests. The prompts are data
(``judge_prompts.yaml``: FastChat's MT-Bench prompts) selected by mode x reference x multi-turn.

Rules that decide results, each covered by a test:

* pairwise games are played in both orders (A/B then B/A) to cancel position bias; by default a
  model wins only if it wins both orders, anything else is a tie (MT-Bench's rule; disagreements are
  also counted as ``inconsistent``); ``swap="calibrated"`` averages the log-odds over both orders
  instead (:mod:`instructkit.judging.swap`, for judges with a strong position bias);
* a verdict that cannot be parsed is an error: counted by reason, written to ``verdicts.jsonl``,
  reported - never silently dropped and never turned into a tie;
* every judge output is cached in ``judgments.jsonl`` keyed by (judge, prompt, generation settings),
  so an interrupted run resumes without asking the judge again.
"""

from __future__ import annotations

import itertools
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import yaml

from instructkit.errors import ConfigError, DataError
from instructkit.jsonl import iter_jsonl
from instructkit.judging.io import AnswerSet, Question

PROMPTS_FILE = Path(__file__).with_name("judge_prompts.yaml")
#: MT-Bench grades these categories against a reference answer
REFERENCE_CATEGORIES = ("math", "reasoning", "coding")
#: (mode, with reference, multi-turn) -> prompt name in the prompt file
PROMPT_NAMES = {
    ("single", False, False): "single-v1", ("single", True, False): "single-math-v1",
    ("single", False, True): "single-v1-multi-turn", ("single", True, True): "single-math-v1-multi-turn",
    ("pairwise", False, False): "pair-v2", ("pairwise", True, False): "pair-math-v1",
    ("pairwise", False, True): "pair-v2-multi-turn", ("pairwise", True, True): "pair-math-v1-multi-turn",
}
MODES = ("single", "pairwise")


@dataclass
class JudgePrompt:
    name: str
    type: str
    system_prompt: str
    prompt_template: str
    output_format: str = ""
    category: str = "general"
    description: str = ""


def load_judge_prompts(path: str | Path | None = None) -> dict[str, JudgePrompt]:
    """Prompts by name from a YAML list or a FastChat-style JSONL file (default: the shipped file)."""
    p = Path(path) if path else PROMPTS_FILE
    if not p.is_file():
        raise ConfigError(f"judge prompts file not found: {p}")
    if p.suffix == ".jsonl":
        records = list(iter_jsonl(p, objects=True))
    else:
        records = list(enumerate(yaml.safe_load(p.read_text(encoding="utf-8")) or [], 1))
    out: dict[str, JudgePrompt] = {}
    for n, rec in records:
        for k in ("name", "type", "prompt_template"):
            if not isinstance(rec.get(k), str):
                raise DataError("missing or not a string", path=str(p), line=n, field=k, reason="missing_field")
        known = {k: v for k, v in rec.items() if k in JudgePrompt.__dataclass_fields__}
        known.setdefault("system_prompt", "")
        out[rec["name"]] = JudgePrompt(**known)
    return out


# -- verdict parsing --------------------------------------------------------------------------------
_RATING = re.compile(r"\[\[\s*(\d+(?:\.\d+)?)\s*\]\]")
_RATING_BACKUP = re.compile(r"\[\s*(\d+(?:\.\d+)?)\s*\]")  # FastChat's fallback: "[8]"
_PAIR = re.compile(r"\[\[\s*([ABC])\s*\]\]")


def parse_rating(text: str, lo: float = 1.0, hi: float = 10.0) -> tuple[float | None, str | None]:
    """``(score, None)`` or ``(None, reason)``. The last ``[[x]]`` wins (the verdict follows the explanation)."""
    found = _RATING.findall(text) or _RATING_BACKUP.findall(text)
    if not found:
        return None, "no_verdict"
    score = float(found[-1])
    if not lo <= score <= hi:
        return None, "out_of_range"
    return score, None


def parse_pair_verdict(text: str) -> tuple[str | None, str | None]:
    """``("A"|"B"|"C", None)`` or ``(None, reason)``; the last verdict tag wins.

    A text holding all three tags is the format instruction echoed back (small judges do this), not a
    verdict: it is an error rather than a tie.
    """
    found = _PAIR.findall(text)
    if not found:
        return None, "no_verdict"
    if {"A", "B", "C"} <= set(found):
        return None, "echoed_format"
    return found[-1], None


# -- games --------------------------------------------------------------------------------------------
@dataclass
class Game:
    """One call of the judge: a prompt about one answer (single) or two answers in one order (pairwise)."""

    mode: str
    question_id: str
    turn: int
    models: tuple[str, ...]            # (model,) or (model in position A, model in position B)
    prompt_name: str
    system: str
    user: str
    key: str = ""


def _fill(prompt: JudgePrompt, values: dict[str, str]) -> str:
    try:
        return prompt.prompt_template.format(**values)
    except KeyError as e:
        raise ConfigError(f"judge prompt {prompt.name!r} uses placeholder {{{e.args[0]}}} that this game "
                          f"does not provide (has: {', '.join(sorted(values))})") from None


def _turn_values(q: Question, turn: int, answers: dict[str, list[str]], ref: list[str] | None) -> dict[str, str]:
    """Placeholder values for one turn; ``answers`` maps a slot ("", "a", "b") to the answer turns."""
    v: dict[str, str] = {}
    if turn == 1:
        v["question"] = q.turns[0]
        for slot, a in answers.items():
            v[f"answer_{slot}".rstrip("_")] = a[0]
        if ref:
            v["ref_answer_1"] = ref[0]
    else:
        v.update(question_1=q.turns[0], question_2=q.turns[1])
        for slot, a in answers.items():
            pre = f"answer_{slot}_" if slot else "answer_"
            v.update({f"{pre}1": a[0], f"{pre}2": a[1]})
        if ref:
            v.update(ref_answer_1=ref[0], ref_answer_2=ref[1] if len(ref) > 1 else "")
    return v


class GameBuilder:
    """Builds games for one mode from questions, answers, references and prompts; counts what it skips."""

    def __init__(self, mode: str, prompts: dict[str, JudgePrompt], references: dict[str, list[str]] | None = None,
                 reference_categories: Sequence[str] = REFERENCE_CATEGORIES):
        if mode not in MODES:
            raise ConfigError(f"unknown judge mode {mode!r}; choose from {', '.join(MODES)}")
        self.mode, self.prompts, self.refs = mode, prompts, references or {}
        self.ref_cats = set(reference_categories)
        self.stats: Counter = Counter()

    def _prompt(self, q: Question, turn: int) -> tuple[JudgePrompt, list[str] | None]:
        ref = q.reference or self.refs.get(q.id)
        use_ref = q.category in self.ref_cats
        if use_ref and not ref:
            self.stats["reference_category_without_reference"] += 1
            use_ref = False
        name = PROMPT_NAMES[(self.mode, use_ref, turn == 2)]
        if name not in self.prompts:
            raise ConfigError(f"the judge prompts file has no prompt named {name!r} (needed for mode={self.mode}, "
                              f"reference={use_ref}, turn={turn}); it has: {', '.join(sorted(self.prompts))}")
        return self.prompts[name], (ref if use_ref else None)

    def _turns(self, q: Question, *answer_lists: list[str]) -> list[int]:
        turns = [1]
        if len(q.turns) >= 2:
            if all(len(a) >= 2 for a in answer_lists):
                turns.append(2)
            else:
                self.stats["turn2_without_answer"] += 1
        return turns

    def single(self, questions: Sequence[Question], answers: AnswerSet) -> list[Game]:
        games = []
        for q in questions:
            for model in answers.models:
                a = answers.answers[model].get(q.id)
                if a is None:
                    continue  # counted by load_answers as missing_answers[model]
                for turn in self._turns(q, a):
                    p, ref = self._prompt(q, turn)
                    games.append(Game("single", q.id, turn, (model,), p.name, p.system_prompt,
                                      _fill(p, _turn_values(q, turn, {"": a}, ref))))
        return games

    def pairwise(self, questions: Sequence[Question], answers: AnswerSet,
                 pairs: Sequence[tuple[str, str]]) -> list[tuple[Game, Game]]:
        """Both orders of every pair on every question both models answered: ``[(a-first, b-first), ...]``."""
        matches = []
        for q in questions:
            for ma, mb in pairs:
                a, b = answers.answers[ma].get(q.id), answers.answers[mb].get(q.id)
                if a is None or b is None:
                    self.stats["pair_missing_answer"] += 1
                    continue
                for turn in self._turns(q, a, b):
                    p, ref = self._prompt(q, turn)
                    g = tuple(Game("pairwise", q.id, turn, order, p.name, p.system_prompt,
                                   _fill(p, _turn_values(q, turn, {"a": x, "b": y}, ref)))
                              for order, x, y in (((ma, mb), a, b), ((mb, ma), b, a)))
                    matches.append(g)
        return matches


def make_pairs(models: Sequence[str], baseline: str | None = None) -> list[tuple[str, str]]:
    """Every model against ``baseline``, or all pairs when there is none."""
    if baseline is None:
        return list(itertools.combinations(sorted(models), 2))
    if baseline not in models:
        raise ConfigError(f"baseline model {baseline!r} has no answers (models: {', '.join(models)})")
    return [(m, baseline) for m in sorted(models) if m != baseline]
