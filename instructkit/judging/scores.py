"""Judge outputs to results: single-answer ratings, pairwise verdicts over both orders, battles for ratings."""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Sequence

from instructkit.judging.judge import Game, parse_pair_verdict, parse_rating


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
