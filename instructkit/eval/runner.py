"""Score evaluation sets with an LM: rank classification, generation + metric, CoT, self-consistency.

``evaluate(lm, sets, out_dir)`` writes ``results.json`` (per task: metrics with stderr, n, format),
``predictions.jsonl`` (per example) and ``throughput.json``; requests go through :class:`CachedLM` so
a rerun in the same folder resumes.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Sequence

from instructkit.eval import metrics as M
from instructkit.eval.api import GenerateRequest, LoglikelihoodRequest
from instructkit.eval.cache import CachedLM
from instructkit.eval.datasets import EvalItem, EvalSet


def _score_mc(items: list[EvalItem], results: list[Any]) -> list[dict]:
    rows, j = [], 0
    for it in items:
        res = results[j: j + len(it.choices)]
        j += len(it.choices)
        lps = [r.logprob for r in res]
        ntok, nchr = [r.n_tokens for r in res], [r.n_chars for r in res]
        preds = {norm: M.rank_classification(lps, ntok, nchr, norm) for norm in ("sum", "char", "token")}
        rows.append(dict(task=it.task, idx=it.idx, prompt=it.prompt, choices=it.choices, scores=lps,
                         n_tokens=ntok, prediction=it.choices[preds["sum"]], target=it.target,
                         correct=preds["sum"] == it.target_index,
                         metrics={"acc": float(preds["sum"] == it.target_index),
                                  "acc_norm": float(preds["char"] == it.target_index),
                                  "acc_token": float(preds["token"] == it.target_index)}))
    return rows


def _answer(it: EvalItem, text: str) -> str:
    if it.answer_kind == "number":
        return M.extract_answer(text, "number")
    if it.answer_kind == "letter":
        ans = M.extract_answer(text)
        m = re.search(r"\(?([A-D])\)?", ans)
        return m.group(1) if m else ans
    return M.extract_answer(text) if it.cot else text.strip()


def _score_gen(items: list[EvalItem], results: list[Any]) -> list[dict]:
    rows = []
    for it, res in zip(items, results):
        answers = [_answer(it, t) for t in res.texts]
        pred = M.majority_vote(answers) if len(answers) > 1 else answers[0]
        target = M.extract_answer(it.target, "number") if it.answer_kind == "number" else it.target
        value = M.METRICS[it.metric](pred, target)
        rows.append(dict(task=it.task, idx=it.idx, prompt=it.prompt, choices=None, completions=res.texts,
                         answers=answers, prediction=pred, target=it.target, correct=value == 1.0,
                         metrics={it.metric: value}))
    return rows


def requests_for(es: EvalSet, self_consistency: int = 1, temperature: float = 0.7,
                 seed: int = 0) -> tuple[list[LoglikelihoodRequest], list[GenerateRequest]]:
    ll, gen = [], []
    for it in es.items:
        if it.choices is not None:
            ll += [LoglikelihoodRequest(it.prompt, c, key=(es.name, it.idx, k)) for k, c in enumerate(it.choices)]
        else:
            sc = self_consistency if it.cot and self_consistency > 1 else 1
            gen.append(GenerateRequest(prompt=it.prompt, max_new_tokens=it.max_new_tokens,
                                       temperature=temperature if sc > 1 else 0.0, stop=list(it.stop), n=sc,
                                       seed=seed if sc > 1 else None, key=(es.name, it.idx)))
    return ll, gen


def summarize(es: EvalSet, rows: list[dict]) -> dict:
    names = sorted({k for r in rows for k in r["metrics"]})
    metrics = {}
    for k in names:
        mean, se = M.mean_stderr([r["metrics"][k] for r in rows if k in r["metrics"]])
        metrics[k] = {"value": mean, "stderr": se}
    main = "acc" if "acc" in metrics else (names[0] if names else None)
    return {"format": es.fmt, "n": len(rows), "cluster": es.cluster, "metrics": metrics, "main_metric": main,
            "score": metrics[main]["value"] if main else None, "dropped": dict(es.dropped)}


def evaluate(lm: Any, sets: Sequence[EvalSet], out_dir: str | Path | None = None, *, self_consistency: int = 1,
             temperature: float = 0.7, seed: int = 0, chunk_size: int = 64, progress: bool = True,
             extra: dict | None = None) -> dict:
    """Evaluate every set; returns (and writes under ``out_dir``) the results dict."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    out = Path(out_dir) if out_dir else None
    if out:
        out.mkdir(parents=True, exist_ok=True)
    # a chunk is also the unit of cache flushes; several batches per chunk keeps the backend's batches full
    chunk_size = max(chunk_size, 8 * int(getattr(lm, "batch_size", 1) or 1))
    clm = lm if isinstance(lm, CachedLM) else CachedLM(lm, out / "cache.jsonl" if out else None, chunk_size)
    results: dict[str, Any] = {"model": clm.name, "fingerprint": clm.fingerprint, "tasks": {}, **(extra or {})}
    all_rows: list[dict] = []
    cols = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*cols, disable=not progress, transient=True) as bar:
        for es in sets:
            ll, gen = requests_for(es, self_consistency, temperature, seed)
            t = bar.add_task(f"{es.name} ({es.fmt})", total=len(ll) + len(gen))
            step = lambda n, t=t: bar.advance(t, n)  # noqa: E731
            ll_res = clm.loglikelihood(ll, step) if ll else []
            gen_res = clm.generate(gen, step) if gen else []
            mc = [it for it in es.items if it.choices is not None]
            gi = [it for it in es.items if it.choices is None]
            rows = _score_mc(mc, ll_res) + _score_gen(gi, gen_res)
            rows.sort(key=lambda r: r["idx"])
            results["tasks"][es.name] = summarize(es, rows)
            all_rows += rows
    from instructkit.eval.throughput import throughput_record
    results["throughput"] = throughput_record(lm if not isinstance(lm, CachedLM) else lm.lm, clm, sets)
    if out:
        with (out / "predictions.jsonl").open("w", encoding="utf-8") as f:
            for r in all_rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        (out / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False))
        (out / "throughput.json").write_text(json.dumps(results["throughput"], indent=2))
    return results
