"""Judge-based win rate of a tuned model against a baseline on held-out prompts, with a bootstrap CI.

Both models answer every prompt (greedy); the eval stage's pairwise judge compares each pair in both
orders (``swap: agree``: a win needs both orders to agree, anything else is a tie; ``swap: calibrated``:
the log-odds averaged over both orders decide, cancelling position bias; unparseable verdicts are
errors, counted and left out). Win rate = (wins + ties / 2) / judged, 95% CI by bootstrap over prompts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal, Optional

import numpy as np
from pydantic import Field, ValidationInfo, field_validator

from instructkit.config.base import Section
from instructkit.jsonl import read_jsonl, write_jsonl
from instructkit.judging.swap import SWAP_DOC, TIE_MARGIN_DOC, SwapRule, check_swap_field


class WinRateConfig(Section):
    prompts: str = Field(..., description="Held-out prompt file (same shapes as synth preferences reads).")
    model: Optional[str] = Field(None, description="The tuned model (or the stage input 'model').")
    baseline: Optional[str] = Field(None, description="The baseline model (or the stage input 'baseline').")
    judge: str = Field("smollm2-135m-instruct", description="Judge model reference or OpenAI-compatible URL.")
    verdict: Literal["generate", "logprob"] = Field("logprob", description="See synth preferences.")
    swap: SwapRule = Field("agree", description=SWAP_DOC)
    tie_margin: float = Field(0.0, ge=0.0, description=TIE_MARGIN_DOC)
    limit: Optional[int] = Field(None, ge=1, description="First N prompts only.")
    max_new_tokens: int = Field(128, ge=1, description="Answer length budget.")
    rounds: int = Field(1000, ge=10, description="Bootstrap resamples for the CI.")
    seed: int = Field(0, description="Bootstrap seed.")

    @field_validator("swap")
    @classmethod
    def _swap_needs_logprob(cls, v: str, info: ValidationInfo) -> str:
        return check_swap_field(v, info)


def win_rate(outcomes: list[float], rounds: int = 1000, seed: int = 0) -> dict[str, float | None]:
    """Mean of per-prompt outcomes (1 win, 0.5 tie, 0 loss) and its 95% bootstrap CI."""
    x = np.asarray(outcomes, dtype=float)
    if not len(x):
        return {"win_rate": None, "ci_low": None, "ci_high": None}
    means = x[np.random.default_rng(seed).integers(0, len(x), size=(rounds, len(x)))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    return {"win_rate": float(x.mean()), "ci_low": float(lo), "ci_high": float(hi)}


def run_winrate(cfg: WinRateConfig, out: str | Path, model: str, baseline: str) -> dict[str, Any]:
    from instructkit.judging.answers import generate_answers
    from instructkit.lm import backends
    from instructkit.judging.io import AnswerSet, Question
    from instructkit.judging.run import run_judge
    from instructkit.data.prompts import read_prompts

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    prompts, skipped = read_prompts(cfg.prompts, cfg.limit)
    qs = [Question(id=pid, turns=[p]) for pid, p in prompts]
    aset = AnswerSet()
    for name, ref in (("tuned", model), ("baseline", baseline)):
        path = out / f"answers_{name}.jsonl"
        if path.is_file():
            answers = [r["answer"] for r in read_jsonl(path)]
        else:
            answers = [a[0] for a in generate_answers(backends.make_backend(ref), qs, max_new_tokens=cfg.max_new_tokens)]
            write_jsonl(path, ({"id": q.id, "answer": a} for q, a in zip(qs, answers)))
        aset.answers[name] = {q.id: [a] for q, a in zip(qs, answers)}
    judge = backends.make_backend(cfg.judge)
    chat_format = judge.renderer.prompt_text if cfg.verdict == "logprob" else None
    summary = run_judge(qs, aset, judge, mode="pairwise", out=out / "judge", baseline="baseline",
                        verdict=cfg.verdict, chat_format=chat_format, progress=False, seed=cfg.seed,
                        swap=cfg.swap, tie_margin=cfg.tie_margin)
    score = {"model_a": 1.0, "model_b": 0.0, "tie": 0.5}
    outcomes, counts = [], {"win": 0, "tie": 0, "loss": 0, "error": 0}
    for v in read_jsonl(out / "judge" / "verdicts.jsonl"):
        if v.get("error"):
            counts["error"] += 1
            continue
        s = score[v["winner"]] if v["model_a"] == "tuned" else 1.0 - score[v["winner"]]
        outcomes.append(s)
        counts["win" if s == 1 else "loss" if s == 0 else "tie"] += 1
    res = {"model": model, "baseline": baseline, "prompts": len(prompts), "prompts_skipped": dict(skipped),
           "counts": counts, **win_rate(outcomes, cfg.rounds, cfg.seed), "judge": cfg.judge, "verdict": cfg.verdict,
           "swap": cfg.swap, "tie_margin": cfg.tie_margin, "judge_errors": summary["errors"],
           # inconsistent = orders' letters disagree; decided_by_calibration = of those, decided anyway
           "judge_stats": {k: summary["stats"].get(k, 0) for k in
                           ("inconsistent", "calibrated_ties", "decided_by_calibration")}}
    (out / "winrate.json").write_text(json.dumps(res, indent=2))
    fmt = lambda x: "-" if x is None else f"{x:.3f}"  # noqa: E731
    (out / "winrate.md").write_text(
        f"| tuned vs baseline | win rate (95% CI) | W / T / L | errors |\n|---|---|---|---:|\n"
        f"| {model} vs {baseline} | {fmt(res['win_rate'])} ({fmt(res['ci_low'])}, {fmt(res['ci_high'])}) | "
        f"{counts['win']} / {counts['tie']} / {counts['loss']} | {counts['error']} |\n")
    ci = None if res["ci_low"] is None else [res["ci_low"], res["ci_high"]]
    # the report stage's row shape: {task: {format, n, metric, value, ci, chance}}
    return {"report": str(out / "winrate.md"), "results": str(out / "winrate.json"), "model": model,
            "scores": {"judge_winrate": {"format": f"pairwise judge ({cfg.verdict}, swap={cfg.swap})", "n": len(outcomes),
                                         "metric": f"win rate vs {baseline}", "value": res["win_rate"], "ci": ci,
                                         "chance": 0.5}}}


def _ref(v: Any) -> str | None:
    return str(v.get("model")) if isinstance(v, dict) else (str(v) if v else None)


def stage(ctx: Any, cfg: WinRateConfig) -> dict[str, Any]:
    """Pipeline stage ``eval.winrate``: inputs ``model`` (tuned) and ``baseline``."""
    from instructkit.errors import ConfigError

    model = _ref(ctx.inputs.get("model")) or cfg.model
    baseline = _ref(ctx.inputs.get("baseline")) or cfg.baseline
    if not model or not baseline:
        raise ConfigError("eval.winrate needs a model and a baseline (stage inputs or config)")
    res = run_winrate(cfg, ctx.out, model, baseline)
    ctx.console.print(Path(res["report"]).read_text())
    return res


def prompt_files(cfg: WinRateConfig) -> list[str]:
    return [cfg.prompts] if Path(cfg.prompts).exists() else []
