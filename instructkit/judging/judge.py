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

import hashlib
import itertools
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import yaml

from instructkit.errors import ConfigError, DataError
from instructkit.lm.api import GenerateRequest
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
        from instructkit.judging.io import read_jsonl
        records = [(n, r) for n, r in read_jsonl(p)]
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


# -- running the judge with a cache -------------------------------------------------------------------
class VerdictCache:
    """Judge outputs by key in an append-only JSONL file (``judgments.jsonl``): resume = skip known keys."""

    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path else None
        self.outputs: dict[str, str] = {}
        #: per-option log-probs of log-prob verdicts (swap=calibrated averages them over both orders)
        self.logprobs: dict[str, dict[str, float]] = {}
        self.unreadable_lines = 0
        if self.path and self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    rec = json.loads(line)
                    self.outputs[rec["key"]] = rec["output"]
                    if isinstance(rec.get("logprobs"), dict):
                        self.logprobs[rec["key"]] = rec["logprobs"]
                except (json.JSONDecodeError, KeyError, TypeError):
                    self.unreadable_lines += 1  # e.g. a line cut by a crash: that game is asked again

    def add(self, records: Sequence[dict[str, Any]]) -> None:
        for r in records:
            self.outputs[r["key"]] = r["output"]
            if isinstance(r.get("logprobs"), dict):
                self.logprobs[r["key"]] = r["logprobs"]
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as f:
                for r in records:
                    f.write(json.dumps(r, ensure_ascii=False) + "\n")


def game_key(judge_name: str, g: Game, max_new_tokens: int, temperature: float) -> str:
    blob = json.dumps([judge_name, g.system, g.user, max_new_tokens, temperature], ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def ask_judge(judge: Any, games: Sequence[Game], cache: VerdictCache, *, max_new_tokens: int = 512,
              temperature: float = 0.0, chunk: int = 8,
              on_progress: Callable[[int, int], None] | None = None) -> dict[str, str]:
    """Fill ``game.key`` and return ``{key: judge output}``, asking the judge only for keys not cached."""
    name = getattr(judge, "name", type(judge).__name__)
    todo: dict[str, Game] = {}
    for g in games:
        g.key = game_key(name, g, max_new_tokens, temperature)
        if g.key not in cache.outputs:
            todo.setdefault(g.key, g)
    pending = list(todo.values())
    done = 0
    for i in range(0, len(pending), chunk):
        batch = pending[i:i + chunk]
        reqs = [GenerateRequest(messages=([{"role": "system", "content": g.system}] if g.system else [])
                                + [{"role": "user", "content": g.user}],
                                max_new_tokens=max_new_tokens, temperature=temperature, key=g.key) for g in batch]
        results = judge.generate(reqs)
        if len(results) != len(reqs):
            raise RuntimeError(f"judge {name!r} returned {len(results)} results for {len(reqs)} requests")
        cache.add([{"key": g.key, "judge": name, "prompt": g.prompt_name, "question_id": g.question_id,
                    "turn": g.turn, "models": list(g.models), "output": r.texts[0]} for g, r in zip(batch, results)])
        done += len(batch)
        if on_progress:
            on_progress(done, len(pending))
    return {g.key: cache.outputs[g.key] for g in games}


#: verdict by log-likelihood: the assistant turn is prefilled with a lead-in and each option is scored
LOGPROB_OPTIONS = {"single": ("Rating: [[", [str(i) for i in range(1, 11)]),
                   "pairwise": ("Final verdict: [[", ["A", "B", "C"])}


def ask_judge_logprob(judge: Any, games: Sequence[Game], cache: VerdictCache, *,
                      chat_format: Callable[[list[dict[str, str]]], str], chunk: int = 8,
                      on_progress: Callable[[int, int], None] | None = None) -> dict[str, str]:
    """Constrained verdicts for judges too weak to follow the output format (e.g. a 135M local model).

    No explanation is generated: the chat prompt (``chat_format`` renders it with the generation
    prompt) is followed by "Rating: [[" or "Final verdict: [[" and every option ("1".."10" or
    A/B/C, each followed by "]]") is scored with ``judge.loglikelihood``; the best one is written as
    an ordinary verdict text, so parsing, the position swap and the cache work unchanged.
    """
    from instructkit.lm.api import LoglikelihoodRequest

    name = getattr(judge, "name", type(judge).__name__)
    todo: dict[str, Game] = {}
    for g in games:
        g.key = game_key(name + "|logprob", g, 0, 0.0)
        if g.key not in cache.outputs:
            todo.setdefault(g.key, g)
    pending = list(todo.values())
    for i in range(0, len(pending), chunk):
        batch = pending[i:i + chunk]
        reqs, spans = [], []
        for g in batch:
            lead, options = LOGPROB_OPTIONS[g.mode]
            msgs = ([{"role": "system", "content": g.system}] if g.system else []) + [{"role": "user", "content": g.user}]
            ctx = chat_format(msgs) + lead
            spans.append((len(reqs), options, lead))
            reqs += [LoglikelihoodRequest(ctx, f"{o}]]", key=(g.key, o)) for o in options]
        res = judge.loglikelihood(reqs)
        records = []
        for g, (start, options, lead) in zip(batch, spans):
            lps = {o: res[start + j].logprob for j, o in enumerate(options)}
            best = max(options, key=lps.__getitem__)
            records.append({"key": g.key, "judge": name, "prompt": g.prompt_name, "question_id": g.question_id,
                            "turn": g.turn, "models": list(g.models), "logprobs": lps,
                            "output": f"(verdict by log-likelihood) {lead}{best}]]"})
        cache.add(records)
        if on_progress:
            on_progress(min(i + chunk, len(pending)), len(pending))
    return {g.key: cache.outputs[g.key] for g in games}


# -- turning outputs into results ---------------------------------------------------------------------
@dataclass
class JudgeResults:
    verdicts: list[dict[str, Any]] = field(default_factory=list)   # one row per game / match, errors included
    battles: list[dict[str, Any]] = field(default_factory=list)    # pairwise outcomes (errors excluded)
    errors: Counter = field(default_factory=Counter)               # reason -> count
    stats: Counter = field(default_factory=Counter)


def score_single(games: Sequence[Game], outputs: dict[str, str], lo: float = 1.0, hi: float = 10.0) -> JudgeResults:
    res = JudgeResults()
    for g in games:
        score, err = parse_rating(outputs[g.key], lo, hi)
        res.verdicts.append({"question_id": g.question_id, "turn": g.turn, "model": g.models[0],
                             "prompt": g.prompt_name, "score": score, "error": err, "judgment": outputs[g.key]})
        res.stats["games"] += 1
        if err:
            res.errors[err] += 1
    return res


_ORDER_WINNER = {0: {"A": "model_a", "B": "model_b", "C": "tie"},   # game 1: a in position A
                 1: {"A": "model_b", "B": "model_a", "C": "tie"}}   # game 2: swapped


def score_pairwise(matches: Sequence[tuple[Game, Game]], outputs: dict[str, str]) -> JudgeResults:
    res = JudgeResults()
    for g1, g2 in matches:
        (v1, e1), (v2, e2) = parse_pair_verdict(outputs[g1.key]), parse_pair_verdict(outputs[g2.key])
        row: dict[str, Any] = {"question_id": g1.question_id, "turn": g1.turn, "model_a": g1.models[0],
                               "model_b": g1.models[1], "prompt": g1.prompt_name, "verdict_ab": v1, "verdict_ba": v2,
                               "judgment_ab": outputs[g1.key], "judgment_ba": outputs[g2.key]}
        res.stats["matches"] += 1
        if e1 or e2:
            # one unreadable order leaves the position bias uncancelled: the match is an error
            row.update(winner=None, error=e1 or e2)
            res.stats["error_matches"] += 1
            for e in (e1, e2):
                if e:
                    res.errors[e] += 1
        else:
            w1, w2 = _ORDER_WINNER[0][v1], _ORDER_WINNER[1][v2]
            consistent = w1 == w2
            row.update(winner=w1 if consistent else "tie", consistent=consistent, error=None)
            res.stats["inconsistent"] += not consistent
            res.battles.append({k: row[k] for k in ("question_id", "turn", "model_a", "model_b", "winner")}
                               | {"consistent": consistent})
        res.verdicts.append(row)
    return res


def battles_from_scores(verdicts: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Single-grading scores -> pairwise battles (same question and turn: higher score wins, equal = tie)."""
    by_item: dict[tuple[str, int], list[tuple[str, float]]] = {}
    for v in verdicts:
        if v["score"] is not None:
            by_item.setdefault((v["question_id"], v["turn"]), []).append((v["model"], v["score"]))
    out = []
    for (qid, turn), scored in by_item.items():
        for (ma, sa), (mb, sb) in itertools.combinations(sorted(scored), 2):
            winner = "model_a" if sa > sb else "model_b" if sb > sa else "tie"
            out.append({"question_id": qid, "turn": turn, "model_a": ma, "model_b": mb, "winner": winner,
                        "source": "single"})
    return out
