"""Reward functions, composable and weighted: ``total = sum_k weight_k * reward_k(completion)``.

Kinds (``train.rl.rewards[].kind``): ``answer`` (the task's declared extraction + comparison against the
gold answer, :class:`instructkit.data.tasks.answers.AnswerSpec`: ``number``/``numeric`` = the last number,
``math``/``math`` = math-verify, which also pays for an unevaluated expression), ``format`` (a regular expression), ``model`` (a trained
reward model, :class:`instructkit.lm.reward.RewardScorer`), ``function`` (a user function by dotted path
``pkg.mod:fn``, called with TRL's signature ``fn(prompts, completions, answers=..., **columns)``).

A reward that raises or returns a non-number never stops the run: the batch is retried one completion
at a time to find the failing ones, each failure is counted by reason (``ValueError: ...``) and scored
``on_error``. A dotted path that does not import is a :class:`ConfigError` raised by :func:`check_specs`,
before any model loads.
"""

from __future__ import annotations

import importlib
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from instructkit.errors import ConfigError


@dataclass
class Sample:
    """What a reward sees of one completion."""

    prompt: str                  # the user prompt text (before the chat template)
    completion: str
    answer: Any = None           # the gold answer (str or list), None for open prompts
    choices: list[str] | None = None


def load_function(ref: str) -> Callable:
    """``"pkg.mod:fn"`` -> the function; ConfigError naming what failed."""
    mod, sep, attr = ref.partition(":")
    if not sep or not mod or not attr:
        raise ConfigError(f"train.rl.rewards: fn={ref!r} must be 'package.module:function'")
    try:
        fn = getattr(importlib.import_module(mod), attr)
    except ImportError as e:
        raise ConfigError(f"train.rl.rewards: fn={ref!r}: cannot import {mod!r} ({e})") from None
    except AttributeError:
        raise ConfigError(f"train.rl.rewards: fn={ref!r}: module {mod!r} has no {attr!r}") from None
    if not callable(fn):
        raise ConfigError(f"train.rl.rewards: fn={ref!r} is not callable")
    return fn


def check_specs(specs: Sequence[Any], has_answers: bool) -> None:
    """Every problem that needs no model: user functions import, answer rewards have gold answers."""
    for s in specs:
        if s.kind == "function":
            load_function(s.fn)
        if s.kind == "model" and not s.path:
            raise ConfigError("train.rl.rewards: kind=model needs `path` (a folder written by train.objective=reward)")
        if s.kind == "answer" and not has_answers:
            raise ConfigError("train.rl.rewards: kind=answer needs gold answers (train.rl.task, or an 'answer' "
                              "field in every prompt record)")
    names = [reward_name(s) for s in specs]
    dup = [n for n, c in Counter(names).items() if c > 1]
    if dup:
        raise ConfigError(f"train.rl.rewards: two rewards are named {dup[0]!r}; give one a `name:`")


def reward_name(spec: Any) -> str:
    if spec.name:
        return spec.name
    return spec.fn.rpartition(":")[2] if spec.kind == "function" else spec.kind


@dataclass
class RewardFn:
    name: str
    weight: float
    on_error: float
    batch: Callable[[list[Sample]], list[Any]]  # samples -> scores (may raise)
    kind: str = "function"


def answer_reward(answer_spec: Any) -> Callable[[list[Sample]], list[float]]:
    def score(samples: list[Sample]) -> list[float]:
        return [answer_spec.score(answer_spec.extract_text(s.completion, s.choices), s.answer, s.choices)
                if s.answer is not None else 0.0 for s in samples]
    return score


def format_reward(pattern: str) -> Callable[[list[Sample]], list[float]]:
    rx = re.compile(pattern, re.DOTALL)
    return lambda samples: [float(rx.search(s.completion) is not None) for s in samples]


def model_reward(path: str, template: str | None, device: str) -> Callable[[list[Sample]], list[float]]:
    from instructkit.lm.reward import RewardScorer

    scorer = RewardScorer(path, template=template, device=device)
    return lambda samples: scorer.score([[{"role": "user", "content": s.prompt}] for s in samples],
                                        [s.completion for s in samples])


def function_reward(ref: str) -> Callable[[list[Sample]], list[Any]]:
    fn = load_function(ref)
    return lambda samples: list(fn([s.prompt for s in samples], [s.completion for s in samples],
                                   answers=[s.answer for s in samples]))


def build_rewards(specs: Sequence[Any], *, answer_spec: Any, template: str | None = None,
                  device: str = "cpu") -> list[RewardFn]:
    """The configured rewards as callables (loads reward models)."""
    makers: dict[str, Callable[[Any], Callable]] = {
        "answer": lambda s: answer_reward(answer_spec),
        "format": lambda s: format_reward(s.pattern),
        "model": lambda s: model_reward(s.path, template, device),
        "function": lambda s: function_reward(s.fn),
    }
    return [RewardFn(reward_name(s), s.weight, s.on_error, makers[s.kind](s), s.kind) for s in specs]


def _valid(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)  # bools count as 0/1


def _reason(e: BaseException) -> str:
    msg = str(e).strip().splitlines()[0][:80] if str(e).strip() else ""
    return f"{type(e).__name__}: {msg}" if msg else type(e).__name__


@dataclass
class Scores:
    per_fn: dict[str, list[float]]          # name -> raw scores (on_error where it failed)
    total: list[float]                      # weighted sum
    failures: Counter = field(default_factory=Counter)  # "name: reason" -> count


def score_all(fns: Sequence[RewardFn], samples: list[Sample]) -> Scores:
    """Every reward on every sample; failures counted, never raised."""
    per_fn: dict[str, list[float]] = {}
    failures: Counter = Counter()
    for f in fns:
        try:
            out = f.batch(samples)
            if len(out) != len(samples):
                raise ValueError(f"returned {len(out)} scores for {len(samples)} completions")
        except Exception:  # find which completions fail: one at a time
            out = []
            for s in samples:
                try:
                    one = f.batch([s])
                    out.append(one[0] if len(one) == 1 else None)
                except Exception as e:
                    failures[f"{f.name}: {_reason(e)}"] += 1
                    out.append(f.on_error)
        vals = []
        for x in out:
            if not _valid(x):
                failures[f"{f.name}: returned {type(x).__name__} {x!r}"[:120]] += 1
                x = f.on_error
            vals.append(float(x))
        per_fn[f.name] = vals
    total = [sum(f.weight * per_fn[f.name][i] for f in fns) for i in range(len(samples))]
    return Scores(per_fn, total, failures)
