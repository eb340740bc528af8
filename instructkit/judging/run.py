"""One judge run end to end: build games, ask the judge (cached), parse, write results and the leaderboard.

Files written to ``out``:

* ``judgments.jsonl`` - raw judge outputs by key (the resume cache; never rewritten, only appended);
* ``verdicts.jsonl`` - one row per game (single) or match (pairwise), parse errors included;
* ``battles.jsonl`` - pairwise outcomes (in single mode derived from the scores);
* ``summary.json`` - counts: games, errors by reason, skipped inputs, per-model scores;
* ``scores.md`` (single mode), ``leaderboard.md``, ``ratings.json``, ``leaderboard.png``.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from instructkit.errors import ConfigError
from instructkit.judging import ask as JA
from instructkit.judging import judge as J
from instructkit.judging import scores as JS
from instructkit.judging.io import AnswerSet, Question


def _write_jsonl(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")


def score_table(verdicts: Sequence[dict[str, Any]], *, rounds: int = 1000, seed: int = 0) -> list[dict[str, Any]]:
    """Per model: mean score (95% bootstrap CI over graded answers), per-turn means, errors."""
    rng = np.random.default_rng(seed)
    rows = []
    for model in sorted({v["model"] for v in verdicts}):
        mine = [v for v in verdicts if v["model"] == model]
        s = np.array([v["score"] for v in mine if v["score"] is not None])
        row: dict[str, Any] = {"model": model, "graded": len(s), "errors": len(mine) - len(s),
                               "mean": float(s.mean()) if len(s) else None, "ci_low": None, "ci_high": None}
        if len(s):
            means = s[rng.integers(0, len(s), size=(rounds, len(s)))].mean(axis=1)
            row["ci_low"], row["ci_high"] = (float(x) for x in np.percentile(means, [2.5, 97.5]))
        for turn in sorted({v["turn"] for v in mine}):
            t = [v["score"] for v in mine if v["turn"] == turn and v["score"] is not None]
            row[f"turn{turn}"] = float(np.mean(t)) if t else None
        rows.append(row)
    rows.sort(key=lambda r: -(r["mean"] if r["mean"] is not None else -1))
    return rows


def scores_markdown(rows: Sequence[dict[str, Any]]) -> str:
    fmt = lambda x: "-" if x is None else f"{x:.2f}"  # noqa: E731
    out = "| model | mean score (95% CI) | graded | errors |\n|---|---|---:|---:|\n"
    return out + "".join(f"| {r['model']} | {fmt(r['mean'])} ({fmt(r['ci_low'])}, {fmt(r['ci_high'])}) | "
                         f"{r['graded']} | {r['errors']} |\n" for r in rows)


def run_judge(questions: Sequence[Question], answers: AnswerSet, judge: Any, *, mode: str, out: str | Path,
              prompts: dict[str, J.JudgePrompt] | None = None, references: dict[str, list[str]] | None = None,
              baseline: str | None = None, max_new_tokens: int = 512, temperature: float = 0.0, chunk: int = 8,
              rounds: int = 200, seed: int = 0, progress: bool = True, verdict: str = "generate",
              chat_format: Any = None, swap: str = "agree", tie_margin: float = 0.0) -> dict[str, Any]:
    """``verdict="generate"``: the judge writes an explanation and a verdict (MT-Bench); ``"logprob"``:
    the verdict options are scored by log-likelihood (needs ``chat_format`` and ``judge.loglikelihood``).
    ``swap`` (pairwise): ``"agree"`` (both orders must agree, MT-Bench) or ``"calibrated"`` (log-odds
    averaged over both orders, ties within ``tie_margin``; see :mod:`instructkit.judging.swap`)."""
    from instructkit.judging.swap import check_swap, score_pairwise_calibrated

    if verdict not in ("generate", "logprob"):
        raise ConfigError(f"unknown verdict method {verdict!r}; choose generate or logprob")
    if mode == "pairwise":
        check_swap(swap, verdict, tie_margin)
    if verdict == "logprob" and chat_format is None:
        raise ConfigError("verdict=logprob needs chat_format (a function rendering the judge's chat prompt)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    builder = J.GameBuilder(mode, prompts or J.load_judge_prompts(), references)
    if mode == "single":
        games = builder.single(questions, answers)
    else:
        matches = builder.pairwise(questions, answers, J.make_pairs(answers.models, baseline))
        games = [g for m in matches for g in m]
    cache = JA.VerdictCache(out / "judgments.jsonl")
    cached_before = len(cache.outputs)

    def ask(on_progress: Any) -> dict[str, str]:
        if verdict == "logprob":
            return JA.ask_judge_logprob(judge, games, cache, chat_format=chat_format, chunk=chunk,
                                       on_progress=on_progress)
        return JA.ask_judge(judge, games, cache, max_new_tokens=max_new_tokens, temperature=temperature,
                           chunk=chunk, on_progress=on_progress)

    if progress:
        from rich.progress import Progress
        with Progress(transient=True) as bar:
            task = bar.add_task(f"judging ({mode})", total=None)
            outputs = ask(lambda done, total: bar.update(task, completed=done, total=total))
    else:
        outputs = ask(None)

    if mode == "single":
        res = JS.score_single(games, outputs)
    elif swap == "calibrated":
        res = score_pairwise_calibrated(matches, outputs, cache.logprobs, tie_margin)
    else:
        res = JS.score_pairwise(matches, outputs)
    battles = JS.battles_from_scores(res.verdicts) if mode == "single" else res.battles
    _write_jsonl(out / "verdicts.jsonl", res.verdicts)
    _write_jsonl(out / "battles.jsonl", battles)
    summary: dict[str, Any] = {
        "mode": mode, "verdict": verdict, **({"swap": swap, "tie_margin": tie_margin} if mode == "pairwise" else {}),
        "judge": getattr(judge, "name", type(judge).__name__), "questions": len(questions),
        "models": answers.models, "baseline": baseline, "judge_prompts": len({g.key for g in games}),
        "judge_calls_new": len(cache.outputs) - cached_before,
        "cache_unreadable_lines": cache.unreadable_lines, "errors": dict(res.errors),
        "stats": dict(res.stats + builder.stats), "input_stats": dict(answers.stats), "battles": len(battles),
    }
    if mode == "single":
        rows = score_table(res.verdicts, seed=seed)
        summary["scores"] = rows
        (out / "scores.md").write_text(scores_markdown(rows))
    if battles and len({m for b in battles for m in (b["model_a"], b["model_b"])}) >= 2:
        from instructkit.judging.ratings import write_leaderboard
        lb = write_leaderboard(battles, out, rounds=rounds, seed=seed, anchor=baseline)
        summary["leaderboard"] = [asdict(r) for r in lb]
    (out / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False))
    return summary


def error_report(summary: dict[str, Any]) -> str:
    """One line: how many judge outputs could not be parsed, by reason (empty when none)."""
    errs = Counter(summary.get("errors", {}))
    if not errs:
        return ""
    return "unparseable judge verdicts: " + ", ".join(f"{k}={v}" for k, v in errs.most_common())
