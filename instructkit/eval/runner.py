"""Score evaluation sets with an LM: rank classification, generation + metric, CoT, self-consistency.

``evaluate(lm, sets, out_dir)`` writes ``results.json`` (per task: metrics with stderr and a 95% CI
bootstrapped over examples, n examples / n items, chance level, per-class recall), ``predictions.jsonl``
(per item, with its example id) and ``throughput.json``; generated answers are extracted and compared
as the task declares (:mod:`instructkit.data.tasks.answers`); requests go through :class:`CachedLM` so
a rerun in the same folder resumes.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any, Sequence

from instructkit.data.tasks import metrics as M
from instructkit import stats as S
from instructkit.lm.api import GenerateRequest, LoglikelihoodRequest
from instructkit.eval.cache import CachedLM
from instructkit.eval.datasets import EvalItem, EvalSet


def _contexts(it: EvalItem, calibrate: bool) -> list[str]:
    """The prompts each choice is scored after: the item's own, then (calibration) its content-free
    renderings and its masked-slot prompt."""
    extra = (list(it.cf_prompts or []) + ([it.mask_prompt] if it.mask_prompt else [])) if calibrate else []
    return [it.prompt] + extra


def _score_mc(items: list[EvalItem], results: list[Any], calibrate: bool = False) -> list[dict]:
    rows, j = [], 0
    for it in items:
        per = []
        for _ in _contexts(it, calibrate):
            per.append(results[j: j + len(it.choices)])
            j += len(it.choices)
        res = per[0]
        lps = [r.logprob for r in res]
        ntok, nchr = [r.n_tokens for r in res], [r.n_chars for r in res]
        preds = {norm: M.rank_classification(lps, ntok, nchr, norm) for norm in ("sum", "char", "token")}
        rows.append(dict(task=it.task, idx=it.idx, example_id=it.example_id, template=it.template, prompt=it.prompt,
                         choices=it.choices, scores=lps, n_tokens=ntok, prediction=it.choices[preds["sum"]],
                         target=it.target, gold_class=it.target_index, pred_class=preds["sum"], chance=it.chance,
                         correct=preds["sum"] == it.target_index,
                         metrics={"acc": float(preds["sum"] == it.target_index),
                                  "acc_norm": float(preds["char"] == it.target_index),
                                  "acc_token": float(preds["token"] == it.target_index)},
                         pair=it.pair, twin=it.twin, options_block=it.options_block))
        if len(per) > 1:
            n_cf = len(it.cf_prompts or [])
            rows[-1]["cf_scores"] = [[r.logprob for r in p] for p in per[1:1 + n_cf]] or None
            rows[-1]["mask_scores"] = [r.logprob for r in per[1 + n_cf]] if it.mask_prompt else None
    return rows


def _score_gen(items: list[EvalItem], results: list[Any]) -> list[dict]:
    rows = []
    for it, res in zip(items, results):
        spec = it.spec  # the task's declared extraction + comparison
        answers = [spec.extract_text(t, it.options) for t in res.texts]
        pred = M.majority_vote(answers) if len(answers) > 1 else answers[0]
        value = spec.score(pred, it.target, it.options)
        rows.append(dict(task=it.task, idx=it.idx, example_id=it.example_id, template=it.template,
                         prompt=it.prompt, choices=None, completions=res.texts, answers=answers, prediction=pred,
                         target=it.target, gold=spec.gold(it.target, it.options), answer_spec=spec.to_dict(),
                         chance=0.0, correct=value == 1.0, metrics={spec.metric: value},
                         # an answer the extraction could not find is counted, never silently wrong
                         unparsed=not pred, pair=it.pair, twin=it.twin))
    return rows


def renders_chat(lm: Any) -> bool:
    """Whether the backend renders contexts with the (training) chat template: then a choice is scored
    as the bare assistant text, not with the raw-text delimiter."""
    inner = lm.lm if isinstance(lm, CachedLM) else lm
    return bool(getattr(inner, "apply_chat_template", False))


def requests_for(es: EvalSet, self_consistency: int = 1, temperature: float = 0.7, seed: int = 0,
                 chat: bool = False, calibrate: bool = False) -> tuple[list[LoglikelihoodRequest], list[GenerateRequest]]:
    ll, gen = [], []
    for it in es.items:
        if it.choices is not None:
            # key: (set, item, choice) for the item's own prompt, + (calibration context,) for the others
            ll += [LoglikelihoodRequest(ctx, c.strip() if chat else c, key=(es.name, it.idx, k) + ((j,) if j else ()))
                   for j, ctx in enumerate(_contexts(it, calibrate)) for k, c in enumerate(it.choices)]
        else:
            sc = self_consistency if it.cot and self_consistency > 1 else 1
            gen.append(GenerateRequest(prompt=it.prompt, max_new_tokens=it.max_new_tokens,
                                       temperature=temperature if sc > 1 else 0.0, stop=list(it.stop), n=sc,
                                       seed=seed if sc > 1 else None, key=(es.name, it.idx)))
    return ll, gen


def _dedup_ll(clm: Any, reqs: list[LoglikelihoodRequest], step: Any) -> list[Any]:
    """Score each distinct (context, continuation) once: content-free prompts repeat across items."""
    index: dict[tuple[str, str], int] = {}
    uniq = []
    for r in reqs:
        if (r.context, r.continuation) not in index:
            index[(r.context, r.continuation)] = len(uniq)
            uniq.append(r)
    res = clm.loglikelihood(uniq, step)
    return [res[index[(r.context, r.continuation)]] for r in reqs]


def boundary_merges(lm: Any, reqs: list[LoglikelihoodRequest]) -> dict | None:
    """How many scored requests had the continuation's first token merged with the context's last
    (BPE at the boundary; the backend then splits at the common prefix): lm-eval users expect to know.
    None for a backend that does not tokenize here (an endpoint)."""
    enc, stats = getattr(lm, "encode_pair", None), getattr(lm, "stats", None)
    if enc is None or stats is None or not reqs:
        return None
    seen, hit = set(), 0
    for r in reqs:
        if (r.context, r.continuation) in seen:
            continue
        seen.add((r.context, r.continuation))
        before = stats.get("ll_boundary_merges", 0)
        try:
            enc(r.context, r.continuation)
        except ValueError:
            continue
        hit += stats.get("ll_boundary_merges", 0) > before
        stats["ll_boundary_merges"] = before  # counting here must not double the backend's own count
    return {"requests": len(seen), "merged": hit}


def class_stats(rows: list[dict]) -> dict | None:
    """Per gold class (the choice position, named by its texts across templates, e.g. "yes/true"):
    recall; balanced accuracy (mean recall); how often each class is predicted."""
    mc = [r for r in rows if r.get("gold_class") is not None]
    if not mc:
        return None
    texts: dict[int, Counter] = {}
    for r in mc:
        for k, c in enumerate(r["choices"]):
            texts.setdefault(k, Counter())[c.strip()] += 1
    name = {k: "/".join(t for t, _ in cnt.most_common(3)) + ("/..." if len(cnt) > 3 else "")
            for k, cnt in texts.items()}
    gold, pred = Counter(r["gold_class"] for r in mc), Counter(r["pred_class"] for r in mc)
    hit = Counter(r["gold_class"] for r in mc if r["correct"])
    recall = {name[c]: hit[c] / n for c, n in sorted(gold.items())}
    return {"recall": recall, "balanced_acc": sum(recall.values()) / len(recall),
            "gold_share": {name[c]: n / len(mc) for c, n in sorted(gold.items())},
            "pred_share": {name[c]: pred[c] / len(mc) for c in sorted(set(gold) | set(pred))}}


def summarize(es: EvalSet, rows: list[dict], n_boot: int = S.N_BOOT, seed: int = 0) -> dict:
    """Per metric: mean, stderr, and a 95% bootstrap CI over *examples* (items of one example move
    together); n distinct examples, n items, chance (the best answer-blind baseline on these items),
    per-class recall, and the controls (eval/controls.py). Contrast twins enter the controls only."""
    from instructkit.eval.controls import task_controls
    every = rows
    rows = [r for r in rows if not r.get("twin")]
    names = sorted({k for r in rows for k in r["metrics"]})
    metrics = {}
    for k in names:
        rs = [r for r in rows if k in r["metrics"]]
        vals = [r["metrics"][k] for r in rs]
        mean, lo, hi = S.bootstrap_ci(vals, [r["example_id"] for r in rs], n_boot, seed)
        metrics[k] = {"value": mean, "stderr": M.mean_stderr(vals)[1], "ci": [lo, hi]}
    main = "acc" if "acc" in metrics else (names[0] if names else None)
    controls = task_controls(every, n_boot, seed)
    chance = controls["chance"]
    by_opts = {}
    if any(r.get("options_block") for r in rows) and main:  # format parity: each rendering on its own
        for flag, name in ((True, "with_options"), (False, "without_options")):
            sub = [r["metrics"][main] for r in rows if bool(r.get("options_block")) == flag and main in r["metrics"]]
            if sub:
                by_opts[name] = {"n": len(sub), "value": sum(sub) / len(sub)}
    unparsed = sum(1 for r in rows if r.get("unparsed"))
    return {"format": es.fmt, "n": len(rows), "n_items": len(rows),
            "n_examples": len({r["example_id"] for r in rows}), "cluster": es.cluster, "metrics": metrics,
            "main_metric": main, "score": metrics[main]["value"] if main else None,
            "ci": metrics[main]["ci"] if main else None, "chance": chance, "classes": class_stats(rows),
            "controls": controls, "by_options": by_opts or None, "unparsed": unparsed,
            "sampling": getattr(es, "sampling", {}) or {}, "dropped": dict(es.dropped)}


def evaluate(lm: Any, sets: Sequence[EvalSet], out_dir: str | Path | None = None, *, self_consistency: int = 1,
             temperature: float = 0.7, seed: int = 0, chunk_size: int = 64, progress: bool = True,
             extra: dict | None = None, n_boot: int = S.N_BOOT, calibrate: bool = True) -> dict:
    """Evaluate every set; returns (and writes under ``out_dir``) the results dict. ``calibrate``: also
    score the items' content-free and masked-slot prompts (the calibrated accuracies in ``controls``)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    out = Path(out_dir) if out_dir else None
    if out:
        out.mkdir(parents=True, exist_ok=True)
    # a chunk is also the unit of cache flushes; several batches per chunk keeps the backend's batches full
    chunk_size = max(chunk_size, 8 * int(getattr(lm, "batch_size", 1) or 1))
    clm = lm if isinstance(lm, CachedLM) else CachedLM(lm, out / "cache.jsonl" if out else None, chunk_size)
    inner = clm.lm if isinstance(clm, CachedLM) else clm
    rendering = {"chat_template": getattr(inner, "chat_template", None) if renders_chat(clm) else None,
                 "applied": renders_chat(clm)}
    results: dict[str, Any] = {"model": clm.name, "fingerprint": clm.fingerprint, "rendering": rendering,
                               "seed": seed, "n_boot": n_boot, "tasks": {}, **(extra or {})}
    all_rows: list[dict] = []
    cols = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*cols, disable=not progress, transient=True) as bar:
        plans = []
        for es in sets:
            ll, gen = requests_for(es, self_consistency, temperature, seed, chat=renders_chat(clm), calibrate=calibrate)
            plans.append((es, ll, gen, bar.add_task(f"{es.name} ({es.fmt})", total=len(ll) + len(gen))))
        ll_res = [_dedup_ll(clm, ll, lambda idx, t=t: bar.advance(t, len(idx))) if ll else []
                  for es, ll, gen, t in plans]
        # every set's generation in one call: the engine's batch stays full across sets and to the end (a set
        # at a time, each in chunks, left batches draining to one row at every chunk's end)
        gens = [r for _, _, gen, _ in plans for r in gen]
        owner = [t for _, _, gen, t in plans for _ in gen]
        gen_all = clm.generate(gens, lambda idx: [bar.advance(owner[i], 1) for i in idx]) if gens else []
        k = 0
        for (es, ll, gen, t), ll_rs in zip(plans, ll_res):
            gen_res, k = gen_all[k: k + len(gen)], k + len(gen)
            mc = [it for it in es.items if it.choices is not None]
            gi = [it for it in es.items if it.choices is None]
            rows = _score_mc(mc, ll_rs, calibrate) + _score_gen(gi, gen_res)
            rows.sort(key=lambda r: r["idx"])
            for r in rows:
                r["set"] = es.name  # the set's name (mmlu:FILE), the item's task may be shorter (mmlu)
            results["tasks"][es.name] = summarize(es, rows, n_boot, seed)
            results["tasks"][es.name]["ll_boundary_merges"] = boundary_merges(inner, ll)
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
