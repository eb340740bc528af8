"""``instructkit synth preferences``: preference pairs from the pipeline itself (RLAIF).

Sample N answers per prompt from a model (local or served), rank them with the eval stage's pairwise
judge (every pair judged in both orders; ``swap: agree``: a pair counts only when both orders agree -
MT-Bench's rule; ``swap: calibrated``: the log-odds averaged over both orders decide, which cancels a
small judge's position bias, see :mod:`instructkit.judging.swap`) or with a trained reward model, and write ``{"prompt", "chosen", "rejected"}`` records that
``train.objective: dpo`` reads. Nothing is dropped silently: identical samples, ties, inconsistent
verdicts and unparseable judge outputs are counted in ``report.json``. The judge's answers are cached
(``judge/judgments.jsonl``), so a rerun on the same ``--out`` resumes.

Prompt files (JSONL or JSON): records with ``prompt`` (string or messages), ``messages``, ``instruction``
(+ ``input``, or self-instruct ``instances[0].input``), or ``turns`` (MT-Bench: the first turn).
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from pathlib import Path
from typing import Any, Literal, Optional

import typer
from pydantic import Field, ValidationInfo, field_validator

from instructkit.config.base import Section
from instructkit.errors import InstructkitError
from instructkit.data.prompts import read_prompts
from instructkit.jsonl import read_jsonl
from instructkit.judging.swap import SWAP_DOC, TIE_MARGIN_DOC, SwapRule, check_swap_field


class PreferencesConfig(Section):
    prompts: str = Field(..., description="Prompt file (JSONL/JSON): prompt | messages | instruction(+input) | turns.")
    model: str = Field("smollm2-135m-instruct", description="Policy that answers: model reference or "
                                                            "OpenAI-compatible URL.")
    n: int = Field(4, ge=2, description="Answers sampled per prompt (all n(n-1)/2 pairs are ranked).")
    temperature: float = Field(0.8, ge=0.0, description="Sampling temperature (> 0, or the answers coincide).")
    top_p: float = Field(0.95, gt=0.0, le=1.0, description="Nucleus sampling.")
    max_new_tokens: int = Field(128, ge=1, description="Answer length budget.")
    limit: Optional[int] = Field(None, ge=1, description="First N prompts only.")
    ranker: Literal["judge", "reward"] = Field("judge", description="judge: pairwise LLM judge with position "
                                                                   "swap; reward: a trained reward model.")
    judge: str = Field("smollm2-135m-instruct", description="Judge model reference or OpenAI-compatible URL.")
    verdict: Literal["generate", "logprob"] = Field(
        "logprob", description="generate: the judge explains then decides (MT-Bench); logprob: verdict options "
                               "scored by log-likelihood (local judges; for small judges).")
    swap: SwapRule = Field("agree", description="ranker=judge: " + SWAP_DOC)
    tie_margin: float = Field(0.0, ge=0.0, description=TIE_MARGIN_DOC)
    reward_model: Optional[str] = Field(None, description="ranker=reward: a reward-model folder "
                                                          "(train.objective=reward RUN/model).")
    seed: int = Field(0, description="Sampling seed.")
    batch_size: int = Field(8, ge=1, description="Requests per generate call.")

    @field_validator("swap")
    @classmethod
    def _swap_needs_logprob(cls, v: str, info: ValidationInfo) -> str:
        # the reward ranker asks no judge, so the rule does not apply to it
        return check_swap_field(v, info) if info.data.get("ranker") == "judge" else v


class LazyPolicy:
    """The policy, built on first use: a rerun whose samples are all cached loads no model. Its cache
    fingerprint is the reference plus, for a local folder, each weight/config file's name, size and mtime
    (a model retrained into the same folder is a different policy)."""

    def __init__(self, ref: str, make: Any):
        self.ref, self._make, self._lm = ref, make, None
        self.name = ref
        stamp: list[Any] = [ref]
        folder = Path(ref)
        if folder.is_dir():
            stamp += [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in sorted(folder.iterdir())
                      if f.is_file() and f.suffix in (".safetensors", ".bin", ".json", ".gguf", ".model")]
        elif folder.is_file():
            stamp.append((folder.stat().st_size, folder.stat().st_mtime_ns))
        self.fingerprint = "policy:" + json.dumps(stamp, default=str)

    def generate(self, requests: Any) -> Any:
        if self._lm is None:
            self._lm = self._make(self.ref)
        return self._lm.generate(requests)


def sample_answers(backend: Any, prompts: list[tuple[str, str]], cfg: PreferencesConfig,
                   cache: str | Path | None = None) -> tuple[list[list[str] | None], dict[str, Any]]:
    """N answers per prompt (``None`` where the backend failed, asked again on the next run) and usage.

    Every request carries its own seed, derived from the run seed and the prompt (id, text), and goes
    through the synth teacher's crash-safe cache: keyed by the model's fingerprint, the messages, n,
    temperature, top_p, max_new_tokens and the seed, appended and fsynced as each batch finishes. A rerun
    with other settings, another model or other prompts asks again instead of reusing stale answers."""
    from instructkit.lm.api import GenerateRequest
    from instructkit.synth.teacher import Teacher, derive_seed

    teacher = Teacher(backend, cache, batch_size=cfg.batch_size, progress=False)
    reqs = [GenerateRequest(messages=[{"role": "user", "content": p}], max_new_tokens=cfg.max_new_tokens,
                            temperature=cfg.temperature, top_p=cfg.top_p, n=cfg.n,
                            seed=derive_seed(cfg.seed, "preferences", pid, p)) for pid, p in prompts]
    res = teacher.generate(reqs, desc="samples")
    return [list(r.texts) if r is not None else None for r in res], teacher.report()


def rank_with_judge(prompts: list[tuple[str, str]], answers: list[list[str]], cfg: PreferencesConfig, out: Path,
                    stats: Counter) -> list[tuple[int, int, int]]:
    """``(prompt index, winner sample, loser sample)`` for every pair the judge decides (``cfg.swap``)."""
    from instructkit.lm import backends
    from instructkit.judging.io import AnswerSet, Question
    from instructkit.judging.run import run_judge

    qs = [Question(id=pid, turns=[p]) for pid, p in prompts]
    aset = AnswerSet()
    for (pid, _), samples in zip(prompts, answers):
        for k, a in enumerate(samples):
            aset.answers.setdefault(f"s{k}", {})[pid] = [a]
    judge = backends.make_backend(cfg.judge)
    chat_format = judge.renderer.prompt_text if cfg.verdict == "logprob" else None
    summary = run_judge(qs, aset, judge, mode="pairwise", out=out / "judge", verdict=cfg.verdict,
                        chat_format=chat_format, chunk=cfg.batch_size, progress=False, seed=cfg.seed,
                        swap=cfg.swap, tie_margin=cfg.tie_margin)
    stats.update({f"judge_error_{k}": v for k, v in summary["errors"].items()})
    index = {pid: i for i, (pid, _) in enumerate(prompts)}
    wins = []
    for v in read_jsonl(out / "judge" / "verdicts.jsonl"):
        a, b = int(v["model_a"][1:]), int(v["model_b"][1:])
        if v.get("error"):
            stats["dropped_judge_error"] += 1
        elif v["winner"] == "tie":
            # under agree an inconsistent pair is a forced tie; under calibrated a tie is a balanced margin
            forced = cfg.swap == "agree" and not v.get("consistent", True)
            stats["tied_inconsistent" if forced else "tied"] += 1
        else:
            # calibrated: the orders' letters disagreed, the averaged margin still decided (agree would tie)
            stats["decided_by_calibration"] += not v.get("consistent", True)
            w, l = (a, b) if v["winner"] == "model_a" else (b, a)
            wins.append((index[v["question_id"]], w, l))
    return wins


def rank_with_reward(prompts: list[tuple[str, str]], answers: list[list[str]], cfg: PreferencesConfig,
                     stats: Counter) -> list[tuple[int, int, int]]:
    from instructkit.lm.reward import RewardScorer

    if not cfg.reward_model:
        raise InstructkitError("ranker=reward needs reward_model= (a folder written by train.objective=reward)")
    scorer = RewardScorer(cfg.reward_model)
    wins = []
    for i, ((_, p), samples) in enumerate(zip(prompts, answers)):
        scores = scorer.score([[{"role": "user", "content": p}]] * len(samples), samples)
        for a, b in itertools.combinations(range(len(samples)), 2):
            if scores[a] == scores[b]:
                stats["tied"] += 1
                continue
            wins.append((i, a, b) if scores[a] > scores[b] else (i, b, a))
    return wins


def run_preferences(cfg: PreferencesConfig, out: str | Path) -> dict[str, Any]:
    """Sample, rank, write ``preferences.jsonl`` + ``report.json``; returns the stage outputs."""
    from instructkit.lm import backends

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    prompts, skipped = read_prompts(cfg.prompts, cfg.limit)
    if not prompts:
        raise InstructkitError(f"{cfg.prompts}: no usable prompt (skipped: {dict(skipped)})")
    # resume: answers come from the cache (OUT/samples.jsonl) only for the same model, settings and prompt
    got, usage = sample_answers(LazyPolicy(cfg.model, backends.make_backend), prompts, cfg, out / "samples.jsonl")
    failed = [i for i, a in enumerate(got) if a is None]
    prompts = [x for i, x in enumerate(prompts) if got[i] is not None]
    answers = [a for a in got if a is not None]
    if not answers:
        raise InstructkitError(f"{cfg.model}: sampling failed for all {len(got)} prompts "
                               f"({usage['failure_examples'][:1]}); rerun the same command to retry")
    stats: Counter = Counter(prompts=len(prompts), samples=sum(len(a) for a in answers),
                             samples_from_cache=usage["cache_hits"] * cfg.n)
    stats["prompt_sampling_failed"] = len(failed)  # asked again on the next run
    stats.update({f"prompt_skipped_{k}": v for k, v in skipped.items()})
    # identical samples make no comparison: keep one of each per prompt, count the rest
    uniq = []
    for a in answers:
        keep = [x for x in dict.fromkeys(s.strip() for s in a) if x]
        stats["dropped_identical_or_empty"] += len(a) - len(keep)
        uniq.append(keep)
    stats["candidate_pairs"] = sum(len(a) * (len(a) - 1) // 2 for a in uniq)
    wins = (rank_with_judge(prompts, uniq, cfg, out, stats) if cfg.ranker == "judge"
            else rank_with_reward(prompts, uniq, cfg, stats))
    data = out / "preferences.jsonl"
    with data.open("w", encoding="utf-8") as f:
        for i, w, l in wins:
            f.write(json.dumps({"id": f"{prompts[i][0]}:{w}>{l}", "prompt": prompts[i][1], "chosen": uniq[i][w],
                                "rejected": uniq[i][l], "ranker": cfg.ranker}, ensure_ascii=False) + "\n")
    stats["pairs_written"] = len(wins)
    report = {"config": cfg.model_dump(), "counts": dict(stats)}
    (out / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    return {"data": str(data), "report": str(out / "report.json"), "pairs": len(wins), "counts": dict(stats)}


def stage(ctx: Any, cfg: PreferencesConfig) -> dict[str, Any]:
    """Pipeline stage ``synth.preferences``; input ``model`` (e.g. ``sft.model``) replaces ``cfg.model``."""
    m = ctx.inputs.get("model")
    if m:
        cfg = cfg.model_copy(update={"model": str(m.get("model") if isinstance(m, dict) else m)})
    res = run_preferences(cfg, ctx.out)
    ctx.console.print(f"preference pairs: {res['pairs']} ({res['counts']})")
    return res


def prompt_files(cfg: PreferencesConfig) -> list[str]:
    return [cfg.prompts] if Path(cfg.prompts).exists() else []


def preferences_cmd(
        out: Path = typer.Option(..., "--out", help="Output folder (rerun the same command to resume)."),
        prompts: Optional[str] = typer.Option(None, help="Prompt file: prompt | messages | instruction | turns."),
        n: Optional[int] = typer.Option(None, "-n", help="Answers sampled per prompt."),
        model: Optional[str] = typer.Option(None, help="Policy: model reference or OpenAI-compatible URL."),
        ranker: Optional[str] = typer.Option(None, help="judge (pairwise, position swap) | reward."),
        judge: Optional[str] = typer.Option(None, help="Judge model reference or URL (ranker=judge)."),
        reward_model: Optional[str] = typer.Option(None, "--reward-model", help="Reward-model folder (ranker=reward)."),
        limit: Optional[int] = typer.Option(None, help="First N prompts only."),
        config: Optional[Path] = typer.Option(None, "--config", help="YAML file with these settings."),
        overrides: Optional[list[str]] = typer.Argument(None, help="key=value overrides, e.g. temperature=1.0.")) -> None:
    """RLAIF preference pairs: sample N answers per prompt, rank with the judge or a reward model; every
    dropped or tied pair counted in report.json."""
    from rich.console import Console

    from instructkit.config.base import load_config

    flags = {"prompts": prompts, "n": n, "model": model, "ranker": ranker, "judge": judge,
             "reward_model": reward_model, "limit": limit}
    cfg = load_config(PreferencesConfig, config, [f"{k}={v}" for k, v in flags.items() if v is not None]
                      + list(overrides or []))
    res = run_preferences(cfg, out)
    Console().print(f"{res['pairs']} preference pairs -> {res['data']}\ncounts: {res['counts']}", highlight=False)
