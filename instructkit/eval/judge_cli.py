"""``instructkit eval judge`` / ``eval leaderboard`` / ``eval answer``. Owned by the judge/ratings part."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, List, Optional

import typer

from instructkit.errors import ConfigError
from instructkit.lm import backends
from instructkit.judging.swap import SWAP_DOC, TIE_MARGIN_DOC, check_swap


def _console() -> Any:
    from rich.console import Console
    return Console()


def judge_cmd(
    questions: Path = typer.Option(..., help="Question file (MT-Bench question.jsonl, self-instruct, or {id, question})."),
    answers: List[str] = typer.Option(..., help="Answer files or folders of *.jsonl, one file per model (repeatable)."),
    judge: str = typer.Option(..., help="Judge: model reference (alias, HF folder, .gguf) or an OpenAI-compatible URL."),
    mode: str = typer.Option("single", help="single (1-10 grades) or pairwise (A/B with position swap)."),
    out: Path = typer.Option(..., help="Output folder (judge outputs are cached here: rerun to resume)."),
    limit: Optional[int] = typer.Option(None, help="Judge only the first N questions."),
    baseline: Optional[str] = typer.Option(None, help="Pairwise: compare every model with this one (else all pairs)."),
    models: Optional[str] = typer.Option(None, help="Comma-separated subset of models to judge."),
    references: Optional[Path] = typer.Option(None, help="Reference answers (MT-Bench reference_answer_*.jsonl)."),
    judge_prompts: Optional[Path] = typer.Option(None, help="Judge prompt file (YAML or FastChat JSONL; default: shipped MT-Bench prompts)."),
    max_new_tokens: int = typer.Option(512, help="Judge output budget (explanation + verdict)."),
    temperature: float = typer.Option(0.0, help="Judge sampling temperature (0 = greedy)."),
    batch_size: int = typer.Option(8, help="Local judge batch size (also the cache write interval)."),
    dtype: str = typer.Option("float32", help="Local judge dtype."),
    endpoint_model: str = typer.Option("default", help="Model name sent to an OpenAI-compatible endpoint."),
    api_key_env: str = typer.Option("OPENAI_API_KEY", help="Environment variable holding the endpoint's API key."),
    bootstrap: int = typer.Option(200, help="Bootstrap rounds for rating confidence intervals."),
    seed: int = typer.Option(0, help="Seed for bootstrap and Elo permutations."),
    verdict: str = typer.Option("generate", help="generate: the judge explains then gives \\[\\[verdict]] (MT-Bench); "
                                "logprob: verdict options scored by log-likelihood (local judges only; for weak judges)."),
    swap: str = typer.Option("agree", help="Pairwise: " + SWAP_DOC),
    tie_margin: float = typer.Option(0.0, "--tie-margin", help=TIE_MARGIN_DOC),
) -> None:
    """Grade model answers with an LLM judge (MT-Bench prompts); write verdicts, battles, leaderboard."""
    from instructkit.judging.judge import load_judge_prompts
    from instructkit.judging.io import load_answers, load_questions, load_references
    from instructkit.judging.run import error_report, run_judge, scores_markdown
    from instructkit.judging.ratings import Row, rich_table

    if mode == "pairwise":
        check_swap(swap, verdict, tie_margin)  # before loading anything
    qs = load_questions(questions, limit)
    ans = load_answers(answers, qs)
    if models:
        keep = [m.strip() for m in models.split(",") if m.strip()]
        unknown = sorted(set(keep) - set(ans.models))
        if unknown:
            raise ConfigError(f"--models: no answers for {', '.join(unknown)} (have: {', '.join(ans.models)})")
        ans.answers = {m: ans.answers[m] for m in keep}
    prompts = load_judge_prompts(judge_prompts)
    refs = load_references(references) if references else None
    backend = backends.make_backend(judge, endpoint_model=endpoint_model, api_key_env=api_key_env, dtype=dtype,
                           batch_size=batch_size)
    chat_format = None
    if verdict == "logprob":
        if judge.startswith(("http://", "https://")):
            raise ConfigError("--verdict logprob needs a local judge (an endpoint's chat API scores no given text)")
        chat_format = backend.renderer.prompt_text
    summary = run_judge(qs, ans, backend, mode=mode, out=out, prompts=prompts, references=refs, baseline=baseline,
                        max_new_tokens=max_new_tokens, temperature=temperature, chunk=batch_size, rounds=bootstrap,
                        seed=seed, verdict=verdict, chat_format=chat_format, swap=swap, tie_margin=tie_margin)
    con = _console()
    con.print(f"{summary['questions']} questions x {len(summary['models'])} models, mode={mode}: "
              f"{summary['judge_prompts']} judge prompts ({summary['judge_calls_new']} asked now, rest cached)")
    if summary["input_stats"]:
        con.print(f"inputs: {summary['input_stats']}")
    if mode == "pairwise":
        st = summary["stats"]
        con.print(f"pairwise ({swap}): {st.get('matches', 0)} matches, {summary['battles']} decided or tied, "
                  f"{st.get('inconsistent', 0)} with disagreeing orders"
                  + (f", {st.get('calibrated_ties', 0)} ties, {st.get('decided_by_calibration', 0)} decided only "
                     f"by calibration" if swap == "calibrated" else " (ties under agree)"))
    if mode == "single":
        con.print(scores_markdown(summary["scores"]), markup=False)
    if "leaderboard" in summary:
        con.print(rich_table([Row(**r) for r in summary["leaderboard"]]))
    report = error_report(summary)
    con.print(f"[yellow]{report}[/yellow]" if report else "all judge verdicts parsed")
    con.print(f"results in {out}/ (verdicts.jsonl, battles.jsonl, summary.json, leaderboard.md, leaderboard.png)")


def leaderboard_cmd(
    battles: List[Path] = typer.Option(..., help="battles.jsonl ({model_a, model_b, winner}); repeatable."),
    out: Path = typer.Option(..., help="Output folder: ratings.json, leaderboard.md, leaderboard.png."),
    bootstrap: int = typer.Option(1000, help="Bootstrap rounds for confidence intervals."),
    permutations: int = typer.Option(100, help="Shuffled battle orders for the median online Elo."),
    anchor: Optional[str] = typer.Option(None, help="Model pinned at 1000 (default: the mean rating is 1000)."),
    seed: int = typer.Option(0, help="Seed for resampling and shuffling."),
) -> None:
    """Elo and Bradley-Terry ratings with bootstrap CIs from pairwise battles; table + plot."""
    from instructkit.judging.ratings import load_battles, rich_table, write_leaderboard

    rows = write_leaderboard([b for f in battles for b in load_battles(f)], out, rounds=bootstrap,
                             n_perm=permutations, seed=seed, anchor=anchor)
    _console().print(rich_table(rows))
    _console().print(f"written: {out}/leaderboard.md, ratings.json, leaderboard.png")


def answer_cmd(
    questions: Path = typer.Option(..., help="Question file (as for eval judge)."),
    model: str = typer.Option(..., help="Model reference or OpenAI-compatible URL."),
    out: Path = typer.Option(..., help="Answer file to write (MT-Bench model_answer format)."),
    name: Optional[str] = typer.Option(None, help="model_id to record (default: derived from --model)."),
    limit: Optional[int] = typer.Option(None, help="Answer only the first N questions."),
    max_new_tokens: int = typer.Option(512, help="Tokens per answer turn."),
    batch_size: int = typer.Option(8, help="Generation batch size."),
    dtype: str = typer.Option("float32", help="Local model dtype."),
    endpoint_model: str = typer.Option("default", help="Model name sent to an OpenAI-compatible endpoint."),
) -> None:
    """Generate a model's answers to a question file (every turn, each conditioned on the previous ones)."""
    from instructkit.judging.answers import generate_answers
    from instructkit.judging.io import load_questions

    qs = load_questions(questions, limit)
    lm = backends.make_backend(model, endpoint_model=endpoint_model, dtype=dtype, batch_size=batch_size)
    rows = generate_answers(lm, qs, max_new_tokens=max_new_tokens)
    model_id = name or Path(model.rstrip("/")).name
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", encoding="utf-8") as f:
        for q, turns in zip(qs, rows):
            f.write(json.dumps({"question_id": q.id, "model_id": model_id,
                                "choices": [{"index": 0, "turns": turns}]}, ensure_ascii=False) + "\n")
    _console().print(f"{len(qs)} answers of {model_id} written to {out}")


def register(app: typer.Typer) -> None:
    """Add the judge commands to the ``eval`` group."""
    app.command("judge")(judge_cmd)
    app.command("leaderboard")(leaderboard_cmd)
    app.command("answer")(answer_cmd)
