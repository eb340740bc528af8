"""The held-out cluster report (the FLAN experiment's output), with the statistics to read it.

The untuned model, the tuned model and optionally an *oracle* (tuned on the held-out cluster itself,
the upper bound) are evaluated zero-shot on every task of the held-out clusters and on the seen
(training) tasks, each context rendered with the training chat template (the tokens training saw).
Per task and per cluster the report gives n distinct examples, n items, chance level, each model's
score with a 95% CI bootstrapped over examples, the paired delta tuned - base with its CI, what the
model does (per-class recall, balanced accuracy, length-normalised accuracy, predicted-class shares),
the 13-gram contamination of each held-out task against the training mixture, and one sentence of
verdict per cluster. Written as ``report.json``, ``report.md``, ``report.html`` and ``clusters.png``.
All models share one request cache in the output folder, so a rerun resumes.
"""

from __future__ import annotations

import json
import shlex
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

from instructkit.errors import DataError, InstructkitError  # noqa: F401  (DataError: re-exported)
from instructkit import stats as S

MODELS = ("base", "tuned", "oracle")


from instructkit.eval.report_plan import (OWN, eval_plan, read_manifest, rendering_name,  # noqa: E402,F401
                                          training_template)


def _read_rows(path: Path) -> dict[str, list[dict]]:
    by: dict[str, list[dict]] = defaultdict(list)
    with path.open(encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            by[r.get("set", r["task"])].append(r)
    return by


def _details(res: dict) -> dict:
    m = res["metrics"]
    d = {k: m[k]["value"] for k in ("acc", "acc_norm", "acc_token") if k in m}
    if res.get("classes"):
        d.update(balanced_acc=res["classes"]["balanced_acc"], recall=res["classes"]["recall"],
                 pred_share=res["classes"]["pred_share"])
    return d


def _ci(t: tuple[float, float, float]) -> dict:
    return {"value": t[0], "ci": [t[1], t[2]]}


def _labels(kind: str, refs: str | list[str] | None) -> dict[str, str]:
    """``tuned`` / ``tuned@1`` / ...: one label per seed's model (the first keeps the plain name)."""
    if not refs:
        return {}
    refs = [refs] if isinstance(refs, str) else list(refs)
    return {(kind if i == 0 else f"{kind}@{i}"): r for i, r in enumerate(refs)}


def held_out_report(base: str, tuned: str | list[str], manifest_path: str | Path, out: str | Path, *,
                    oracle: str | list[str] | None = None, limit: int | None = None, templates: str = "all",
                    seed: int = 0, chat_template: str | None = "auto", held_out: list[str] | None = None,
                    max_seen: int | None = None, n_boot: int = S.N_BOOT, contamination: bool = True,
                    batch_size: int = 8, dtype: str = "float32", make_lm: Callable[[str], Any] | None = None,
                    progress: bool = True, options: float = 0.0, twins: bool = True, calibrate_all: bool = False,
                    preregistered: dict | None = None) -> dict:
    """Evaluate base / tuned / (oracle) and write the report; see the module docstring and docs/eval.md.

    ``tuned`` and ``oracle`` may be lists (one model per training seed). ``options``: the share of items
    rendered with an OPTIONS list (the training mixture's ``options_prob``: format parity). The base is
    scored once, with its calibration prompts; ``calibrate_all`` calibrates the other models too."""
    from instructkit.eval.cache import CachedLM
    from instructkit.eval.sets import load_eval_set
    from instructkit.eval.runner import evaluate
    from instructkit.models.memory import release

    manifest = read_manifest(manifest_path)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plan, not_evaluated = eval_plan(manifest, held_out, max_seen)
    if not plan:
        raise InstructkitError(f"{manifest_path}: no held-out or training tasks to evaluate")
    sets = [load_eval_set(p["ref"], "zero_shot", limit, seed=seed, templates=templates, options=options,
                          twins=twins) for p in plan]
    first = tuned if isinstance(tuned, str) else tuned[0]
    template, apply = training_template(chat_template, first)
    if make_lm is None:
        from instructkit.lm.hf import HFModel
        make_lm = lambda ref: HFModel(ref, dtype=dtype, batch_size=batch_size, progress=False,  # noqa: E731
                                      chat_template=template, apply_chat_template=apply)
    refs = {"base": base, **_labels("tuned", tuned), **_labels("oracle", oracle)}
    models = list(refs)
    results, rows, allrows = {}, {}, {}
    for label in models:
        lm = make_lm(refs[label])
        clm = CachedLM(lm, out / "cache.jsonl")
        # the oracle is trained on the held-out tasks: it is their upper bound and says nothing about
        # seen tasks, so it is scored on held-out tasks only (a third of the demo's evaluation saved)
        mine = sets if not label.startswith("oracle") else [es for p, es in zip(plan, sets) if p["held_out"]]
        results[label] = evaluate(clm, mine, out / label.replace("@", "_seed"), progress=progress, seed=seed,
                                  n_boot=n_boot, extra={"model_ref": refs[label]},
                                  calibrate=label == "base" or calibrate_all)
        allrows[label] = _read_rows(out / label.replace("@", "_seed") / "predictions.jsonl")
        rows[label] = {k: [r for r in v if not r.get("twin")] for k, v in allrows[label].items()}
        del lm, clm
        release()  # one model resident at a time (a cycle would keep each scored model alive)
    task_rows = []
    for p, es in zip(plan, sets):
        task_rows.append(_task_row(p, es, results, rows, models, n_boot, seed))
    clusters = _clusters(task_rows, rows, models, n_boot, seed, allrows, results)
    cont = _contamination(Path(manifest_path), plan, sets) if contamination else {"skipped": "disabled"}
    for r in task_rows:
        r["contamination"] = cont.get("tasks", {}).get(r["task"])
    from instructkit.eval.report_controls import loss_trend
    oracle_training = {m: loss_trend(refs[m]) for m in models if m.startswith("oracle")}
    for c in clusters:  # the oracle is an upper bound only once its loss has stopped falling
        o = (c.get("controls") or {}).get("oracle")
        if o and c["held_out"]:
            o["training"] = oracle_training
            if any((t or {}).get("still_falling") for t in oracle_training.values()):
                c["verdict"] += " Flag: the oracle's training loss was still falling (not at a plateau)."
    report = dict(models=refs, base=base, oracle_training=oracle_training or None, tuned=first, oracle=oracle if isinstance(oracle, (str, type(None)))
                  else oracle[0], manifest=str(manifest_path),
                  format="zero_shot", chat_template=rendering_name(template, apply), limit=limit,
                  templates=templates, seed=seed, n_boot=n_boot, options_share=options, twins=twins,
                  preregistered=preregistered,
                  command=_command(refs, manifest_path, out, limit, templates, seed, rendering_name(template, apply),
                                   held_out, max_seen) + (f" --options {options}" if options else ""),
                  held_out_clusters=manifest["held_out"].get("clusters", []), tasks=task_rows, clusters=clusters,
                  contamination=cont, not_evaluated=not_evaluated,
                  throughput={k: v["throughput"] for k, v in results.items()})
    (out / "report.json").write_text(json.dumps(report, indent=2))
    from instructkit.eval.report_render import html_report, markdown, plot_clusters
    plot_clusters(clusters, [m for m in MODELS if m in refs], out / "clusters.png")
    (out / "report.md").write_text(markdown(report))
    (out / "report.html").write_text(html_report(report))
    return report


def _task_row(p: dict, es: Any, results: dict, rows: dict, models: list[str], n_boot: int, seed: int) -> dict:
    b = results["base"]["tasks"][es.name]
    ctl = b.get("controls") or {}
    metric = b["main_metric"]
    models = [m for m in models if es.name in results[m]["tasks"]]
    vals = {m: [r["metrics"][metric] for r in rows[m][es.name]] for m in models}
    groups = [r["example_id"] for r in rows["base"][es.name]]
    row = dict(task=p["task"], ref=p["ref"], name=es.name, cluster=p["cluster"] or es.cluster or es.name,
               held_out=p["held_out"], metric=metric, chance=b["chance"], n_examples=b["n_examples"],
               n_items=b["n_items"], n=b["n_items"], baselines=ctl.get("baselines"), sampling=b.get("sampling"),
               unparsed={m: results[m]["tasks"][es.name].get("unparsed", 0) for m in models
                         if es.name in results[m]["tasks"]},
               ll_boundary_merges=b.get("ll_boundary_merges"),
               calibrated={k: ctl[k] for k in ("calibrated_content_free", "calibrated_masked_slot") if k in ctl},
               controls={m: results[m]["tasks"][es.name].get("controls") for m in models
                         if es.name in results[m]["tasks"]},
               by_options={m: results[m]["tasks"][es.name].get("by_options") for m in models
                           if es.name in results[m]["tasks"] and results[m]["tasks"][es.name].get("by_options")})
    row["scores"] = {m: {"value": results[m]["tasks"][es.name]["score"], "ci": results[m]["tasks"][es.name]["ci"]}
                     for m in models}
    for m in models:
        row[m] = row["scores"][m]["value"]
    row["details"] = {m: _details(results[m]["tasks"][es.name]) for m in models}
    d = S.paired_bootstrap(vals["base"], vals["tuned"], groups, n_boot, seed)
    row["delta"], row["delta_ci"] = d[0], [d[1], d[2]]
    if "oracle" in models:
        d = S.paired_bootstrap(vals["base"], vals["oracle"], groups, n_boot, seed)
        row["delta_oracle"], row["delta_oracle_ci"] = d[0], [d[1], d[2]]
    return row


def _clusters(task_rows: list[dict], rows: dict, models: list[str], n_boot: int, seed: int,
              allrows: dict | None = None, results: dict | None = None) -> list[dict]:
    from instructkit.eval.report_controls import cluster_controls, held_out_verdict
    by: dict[tuple[str, bool], list[dict]] = defaultdict(list)
    for r in task_rows:
        by[(r["cluster"], r["held_out"])].append(r)
    out = []
    every = models
    for (cluster, held), trs in sorted(by.items(), key=lambda kv: (not kv[0][1], kv[0][0])):
        models = [m for m in every if all(m in t["scores"] for t in trs)]
        per = {m: [([x["metrics"][t["metric"]] for x in rows[m][t["name"]]],
                    [x["example_id"] for x in rows[m][t["name"]]]) for t in trs] for m in models}
        c = dict(cluster=cluster, held_out=held, n_tasks=len(trs), tasks=[t["task"] for t in trs],
                 metric=trs[0]["metric"] if len({t["metric"] for t in trs}) == 1 else "mixed",
                 n_examples=sum(t["n_examples"] for t in trs), n_items=sum(t["n_items"] for t in trs),
                 chance=sum(t["chance"] for t in trs) / len(trs))
        c["scores"] = {m: _ci(S.mean_of_tasks_ci(per[m], n_boot, seed)) for m in models}
        for m in models:
            c[m] = c["scores"][m]["value"]
        for key, other in (("delta", "tuned"), ("delta_oracle", "oracle")):
            if other in models:
                diffs = [([y - x for x, y in zip(a[0], bb[0])], a[1]) for a, bb in zip(per["base"], per[other])]
                d = S.mean_of_tasks_ci(diffs, n_boot, seed)
                c[key], c[key + "_ci"] = d[0], [d[1], d[2]]
        c["summary"] = _verdict(c, models)
        c["verdict"] = c["summary"]
        if allrows is not None:
            c["controls"] = cluster_controls(trs, allrows, results, models, n_boot, seed)
            c["chance"] = c["controls"]["chance"]  # the best answer-blind baseline on these items
            c["summary"] = _verdict(c, models)
            if held:
                c["decision"], c["verdict"] = held_out_verdict(cluster, c["controls"])
            else:
                c["verdict"] = c["summary"]
        out.append(c)
    return out


def _verdict(c: dict, models: list[str]) -> str:
    what = f"{'held-out' if c['held_out'] else 'seen (sanity check)'} {c['metric']} on {c['cluster']}"
    s = S.verdict(c["delta"], *c["delta_ci"], what=what)
    s += f" Chance {c['chance']:.3f}, base {c['base']:.3f}, tuned {c['tuned']:.3f}"
    if "oracle" in models:
        gap = c["oracle"] - c["base"]
        s += f", oracle {c['oracle']:.3f}"
        if gap > 0:
            s += f" (tuned closes {100 * (c['tuned'] - c['base']) / gap:.0f}% of the base-to-oracle gap)"
        else:
            s += " (the oracle is not above base: this cluster cannot show an effect at this scale)"
    return s + "."


def _contamination(manifest_path: Path, plan: list[dict], sets: list[Any], n: int = 13) -> dict:
    """13-gram overlap of each held-out task's evaluated examples with the training mixture beside the
    manifest (an example counts once if any of its items shares a 13-gram with training)."""
    mixture = manifest_path.parent / "mixture.jsonl"
    if not mixture.is_file():
        return {"skipped": f"no training mixture at {mixture}"}
    from instructkit.data.tasks.contamination import ngrams, train_index
    from instructkit.jsonl import read_jsonl
    index = train_index(read_jsonl(mixture), n)
    tasks = {}
    for p, es in zip(plan, sets):
        if not p["held_out"]:
            continue
        hit: dict[str, bool] = {}
        for it in es.items:
            hit[it.example_id] = hit.get(it.example_id, False) or bool(ngrams(f"{it.prompt}\n{it.target}", n) & index)
        k = sum(hit.values())
        tasks[p["task"]] = {"examples": len(hit), "contaminated": k, "share": k / len(hit) if hit else 0.0}
    return {"mixture": str(mixture), "n": n, "tasks": tasks}


def _command(refs: dict, manifest: Any, out: Path, limit: Any, templates: str, seed: int, template: Any,
             held_out: list[str] | None, max_seen: Any) -> str:
    parts = ["instructkit", "eval", "report", "--base", refs["base"]]
    for kind in ("tuned", "oracle"):  # one flag per training seed
        parts += [x for k, v in refs.items() if k == kind or k.startswith(kind + "@") for x in (f"--{kind}", v)]
    parts += ["--manifest", str(manifest), "--out", str(out), "--templates", templates, "--seed", str(seed),
              "--chat-template", template]
    if limit is not None:
        parts += ["--limit", str(limit)]
    if max_seen is not None:
        parts += ["--max-seen", str(max_seen)]
    for h in held_out or []:
        parts += ["--held-out", h]
    return " ".join(shlex.quote(str(x)) for x in parts)
