"""Asking the judge: generated verdicts and log-prob verdicts, each output cached by key so a run resumes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Callable, Sequence

from instructkit.judging.judge import Game
from instructkit.jsonl import append_jsonl, read_log
from instructkit.lm.api import GenerateRequest


# -- running the judge with a cache -------------------------------------------------------------------
class VerdictCache:
    """Judge outputs by key in an append-only JSONL file (``judgments.jsonl``): resume = skip known keys."""

    def __init__(self, path: str | Path | None):
        self.path = Path(path) if path else None
        self.outputs: dict[str, str] = {}
        #: per-option log-probs of log-prob verdicts (swap=calibrated averages them over both orders)
        self.logprobs: dict[str, dict[str, float]] = {}
        # a line cut by a crash is unreadable: that game is asked again
        records, self.unreadable_lines = read_log(self.path, ("key", "output")) if self.path else ([], 0)
        for rec in records:
            self.outputs[rec["key"]] = rec["output"]
            if isinstance(rec.get("logprobs"), dict):
                self.logprobs[rec["key"]] = rec["logprobs"]

    def add(self, records: Sequence[dict[str, Any]]) -> None:
        for r in records:
            self.outputs[r["key"]] = r["output"]
            if isinstance(r.get("logprobs"), dict):
                self.logprobs[r["key"]] = r["logprobs"]
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            append_jsonl(self.path, records)


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
