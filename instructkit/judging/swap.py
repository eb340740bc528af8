"""How the two orders of a pairwise game become one outcome: ``agree`` (MT-Bench) or ``calibrated`` (BPC).

Every pairwise game is played twice, model X in position A then in position B. Two rules combine them:

* ``agree`` (default; MT-Bench, Zheng et al. 2023): a model wins only if both orders name it; any
  disagreement is a tie (counted as ``inconsistent``). Sound for a strong judge, but a judge with a
  strong position bias (a 135M model says "A" whatever it reads) turns *every* game into a tie, and
  its real, weaker preference is lost.
* ``calibrated`` (Balanced Position Calibration, Wang et al. 2023, "Large Language Models are not
  Fair Evaluators", sec. 3.2): each order is scored and the scores are averaged over both orders.
  With log-prob verdicts the score of an order is the log-odds of "A better" vs "B better",
  ``m = logP(A) - logP(B)``. Writing it as ``position bias + preference for the answer in A``,
  order 1 (X in A) gives ``m1 = b + d`` and order 2 (Y in A) gives ``m2 = b - d``; the margin for X,
  ``(m1 - m2) / 2 = d``, has the constant position bias ``b`` cancelled. X wins when the margin is
  above ``tie_margin``, loses below ``-tie_margin``, ties otherwise. The tie option's ("C")
  log-prob is recorded but not used: the averaged A/B margin and its threshold decide ties.

Needs the per-option log-probs that :func:`instructkit.judging.judge.ask_judge_logprob` caches, so
``calibrated`` goes with ``verdict=logprob`` only (a generated "[[A]]" carries no score to average).
"""

from __future__ import annotations

import math
from typing import Any, Literal, Mapping, Sequence

from instructkit.errors import ConfigError

SwapRule = Literal["agree", "calibrated"]
SWAP_RULES = ("agree", "calibrated")
#: the doc string used for the config fields that expose the choice (judge CLI, preferences, win rate)
SWAP_DOC = ("How the two position-swapped verdicts combine. agree: a win needs both orders to agree, else "
            "a tie (MT-Bench). calibrated: average the log-odds of 'A better' vs 'B better' over both "
            "orders so a constant position bias cancels (Balanced Position Calibration, Wang et al. 2023); "
            "needs verdict=logprob.")
TIE_MARGIN_DOC = ("swap=calibrated: a pair is a tie when |averaged log-odds margin| <= this (nats); 0 = tie "
                  "only on an exact balance.")


def check_swap(swap: str, verdict: str, tie_margin: float = 0.0) -> None:
    """Clear error for a rule this run cannot apply (called by the CLI, the configs and ``run_judge``)."""
    if swap not in SWAP_RULES:
        raise ConfigError(f"unknown swap rule {swap!r}; choose from {', '.join(SWAP_RULES)}")
    if swap == "calibrated" and verdict != "logprob":
        raise ConfigError(f"swap=calibrated averages per-order log-odds, which only verdict=logprob records "
                          f"(got verdict={verdict!r}); use swap=agree with generated verdicts")
    if not tie_margin >= 0:  # also rejects NaN
        raise ConfigError(f"tie_margin must be >= 0 (got {tie_margin})")


def check_swap_field(swap: str, info: Any) -> str:
    """Body of a config's ``swap`` field validator: :func:`check_swap` against the config's ``verdict``,
    as a ValueError so pydantic reports it under the key ``swap``."""
    if "verdict" in info.data:
        try:
            check_swap(swap, info.data["verdict"])
        except ConfigError as e:
            raise ValueError(str(e)) from None
    return swap


def order_margin(logprobs: Mapping[str, float] | None) -> tuple[float | None, str | None]:
    """``(logP(A) - logP(B), None)`` for one order, or ``(None, reason)`` when it cannot be computed."""
    if not logprobs or "A" not in logprobs or "B" not in logprobs:
        return None, "no_logprobs"
    m = float(logprobs["A"]) - float(logprobs["B"])
    if not math.isfinite(m):
        return None, "nonfinite_logprobs"
    return m, None


def calibrated_margin(m_ab: float, m_ba: float) -> float:
    """Margin for the model in position A of the first order: the mean of its log-odds over both orders
    (``m_ba`` favours the other model, hence the minus sign)."""
    return (m_ab - m_ba) / 2.0


def score_pairwise_calibrated(matches: Sequence[tuple[Any, Any]], outputs: Mapping[str, str],
                              logprobs: Mapping[str, Mapping[str, float]], tie_margin: float = 0.0) -> Any:
    """Like :func:`instructkit.judging.judge.score_pairwise` (same row and battle shapes), decided by the
    averaged margin. Counted in ``stats``: ``inconsistent`` (the orders' argmax letters disagree, as
    under ``agree``), ``calibrated_ties`` and ``decided_by_calibration`` (inconsistent letters, a winner
    nonetheless: the games ``agree`` would have tied)."""
    from instructkit.judging.judge import parse_pair_verdict
    from instructkit.judging.scores import _ORDER_WINNER, JudgeResults

    res = JudgeResults()
    for g1, g2 in matches:
        (v1, _), (v2, _) = parse_pair_verdict(outputs[g1.key]), parse_pair_verdict(outputs[g2.key])
        (m1, e1), (m2, e2) = order_margin(logprobs.get(g1.key)), order_margin(logprobs.get(g2.key))
        row: dict[str, Any] = {"question_id": g1.question_id, "turn": g1.turn, "model_a": g1.models[0],
                               "model_b": g1.models[1], "prompt": g1.prompt_name, "verdict_ab": v1, "verdict_ba": v2,
                               "margin_ab": m1, "margin_ba": m2, "judgment_ab": outputs[g1.key],
                               "judgment_ba": outputs[g2.key]}
        res.stats["matches"] += 1
        if e1 or e2:
            # one order without scores leaves the bias uncancelled: an error, counted, never a tie
            row.update(winner=None, margin=None, error=e1 or e2)
            res.stats["error_matches"] += 1
            for e in (e1, e2):
                if e:
                    res.errors[e] += 1
            res.verdicts.append(row)
            continue
        margin = calibrated_margin(m1, m2)
        winner = "model_a" if margin > tie_margin else "model_b" if margin < -tie_margin else "tie"
        consistent = v1 is not None and v2 is not None and _ORDER_WINNER[0][v1] == _ORDER_WINNER[1][v2]
        row.update(winner=winner, margin=margin, consistent=consistent, error=None)
        res.stats["inconsistent"] += not consistent
        res.stats["calibrated_ties"] += winner == "tie"
        res.stats["decided_by_calibration"] += winner != "tie" and not consistent
        res.battles.append({k: row[k] for k in ("question_id", "turn", "model_a", "model_b", "winner")}
                           | {"consistent": consistent, "margin": margin})
        res.verdicts.append(row)
    return res
