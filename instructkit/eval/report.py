"""The held-out cluster report (the FLAN experiment's output).

Both models are evaluated zero-shot on every task of the held-out clusters and on the seen (training)
tasks; per task and per cluster the before/after scores are written as ``report.json``, ``report.md``,
``report.html`` and a bar plot ``clusters.png`` (held-out clusters hatched). Both models share one
request cache in the output folder, so a rerun resumes and base == tuned costs one evaluation.
"""

from __future__ import annotations

import html
import json
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

from instructkit.errors import DataError, InstructkitError


def read_manifest(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise InstructkitError(f"manifest not found: {p}")
    try:
        m = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise DataError(f"invalid JSON ({e.msg})", path=str(p), line=e.lineno, reason="invalid_json") from e
    held = m.get("held_out") if isinstance(m, dict) else None
    if not isinstance(held, dict) or not isinstance(held.get("tasks", []), list):
        raise DataError("expected 'held_out': {tasks: [...], clusters: [...]}", path=str(p), field="held_out",
                        reason="missing_field")
    if not isinstance(m.get("train_tasks", []), list):
        raise DataError("expected a list", path=str(p), field="train_tasks", reason="bad_type")
    return m


def _cluster_of(manifest: dict, task: str, loaded: str | None) -> str:
    info = manifest.get("tasks", {}).get(task) or {}
    return info.get("cluster") or loaded or "unknown"


def held_out_report(base: str, tuned: str, manifest_path: str | Path, out: str | Path, *, limit: int | None = None,
                    batch_size: int = 8, dtype: str = "float32", max_seen: int | None = None,
                    make_lm: Callable[[str], Any] | None = None, progress: bool = True) -> dict:
    from instructkit.eval.cache import CachedLM
    from instructkit.eval.datasets import load_eval_set
    from instructkit.eval.runner import evaluate

    manifest = read_manifest(manifest_path)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    held = list(dict.fromkeys(manifest["held_out"].get("tasks", [])))
    seen = [t for t in dict.fromkeys(manifest.get("train_tasks", [])) if t not in held]
    if max_seen is not None:
        seen = seen[:max_seen]
    if not held and not seen:
        raise InstructkitError(f"{manifest_path}: no held-out or training tasks to evaluate")
    sets = [load_eval_set(t, "zero_shot", limit) for t in held + seen]
    if make_lm is None:
        from instructkit.eval.hf import HFModel
        make_lm = lambda ref: HFModel(ref, dtype=dtype, batch_size=batch_size, progress=False)  # noqa: E731
    scores: dict[str, dict] = {}
    for label, ref in (("base", base), ("tuned", tuned)):
        lm = make_lm(ref)
        clm = CachedLM(lm, out / "cache.jsonl")
        scores[label] = evaluate(clm, sets, out / label, progress=progress, extra={"model_ref": ref})
        del lm, clm
    rows = []
    for ref, es in zip(held + seen, sets):
        b, t = scores["base"]["tasks"][es.name], scores["tuned"]["tasks"][es.name]
        rows.append(dict(task=ref, cluster=_cluster_of(manifest, ref, es.cluster), held_out=ref in held,
                         metric=b["main_metric"], n=b["n"], base=b["score"], tuned=t["score"],
                         base_stderr=b["metrics"][b["main_metric"]]["stderr"],
                         tuned_stderr=t["metrics"][t["main_metric"]]["stderr"], delta=t["score"] - b["score"]))
    clusters: dict[tuple[str, bool], list[dict]] = defaultdict(list)
    for r in rows:
        clusters[(r["cluster"], r["held_out"])].append(r)
    per_cluster = [dict(cluster=c, held_out=h, n_tasks=len(rs), base=sum(r["base"] for r in rs) / len(rs),
                        tuned=sum(r["tuned"] for r in rs) / len(rs)) for (c, h), rs in sorted(clusters.items(),
                                                                                           key=lambda kv: (not kv[0][1], kv[0][0]))]
    report = dict(base=base, tuned=tuned, manifest=str(manifest_path), format="zero_shot", limit=limit,
                  held_out_clusters=manifest["held_out"].get("clusters", []), tasks=rows, clusters=per_cluster,
                  throughput={k: v["throughput"] for k, v in scores.items()})
    (out / "report.json").write_text(json.dumps(report, indent=2))
    _plot(per_cluster, out / "clusters.png")
    (out / "report.md").write_text(_markdown(report))
    (out / "report.html").write_text(_html(report))
    return report


def _plot(per_cluster: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(per_cluster)
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * n + 2), 4))
    xs = range(n)
    for off, key, color in ((-0.2, "base", "#9e9e9e"), (0.2, "tuned", "#1f77b4")):
        bars = ax.bar([x + off for x in xs], [c[key] for c in per_cluster], width=0.4, label=key, color=color)
        for bar, c in zip(bars, per_cluster):
            if c["held_out"]:
                bar.set_hatch("//")
    ax.set_xticks(list(xs))
    ax.set_xticklabels([f"{c['cluster']}\n({'held-out' if c['held_out'] else 'seen'})" for c in per_cluster],
                       fontsize=8)
    ax.set_ylabel("zero-shot score")
    ax.set_title("Before vs after instruction tuning (hatched: held-out clusters)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _markdown(rep: dict) -> str:
    lines = ["# Held-out cluster report", "", f"base: `{rep['base']}`  tuned: `{rep['tuned']}`  format: zero-shot"
             + (f", limit {rep['limit']}" if rep["limit"] else ""), "", "![clusters](clusters.png)", "",
             "## Clusters", "", "| cluster | held-out | tasks | base | tuned | delta |", "|---|---|---|---|---|---|"]
    for c in rep["clusters"]:
        lines.append(f"| {c['cluster']} | {'yes' if c['held_out'] else 'no'} | {c['n_tasks']} | {c['base']:.4f} | "
                     f"{c['tuned']:.4f} | {c['tuned'] - c['base']:+.4f} |")
    lines += ["", "## Tasks", "", "| task | cluster | held-out | metric | n | base | tuned | delta |",
              "|---|---|---|---|---|---|---|---|"]
    for r in rep["tasks"]:
        lines.append(f"| {r['task']} | {r['cluster']} | {'yes' if r['held_out'] else 'no'} | {r['metric']} | {r['n']} | "
                     f"{r['base']:.4f} ± {r['base_stderr']:.4f} | {r['tuned']:.4f} ± {r['tuned_stderr']:.4f} | "
                     f"{r['delta']:+.4f} |")
    return "\n".join(lines) + "\n"


def _html(rep: dict) -> str:
    e = html.escape

    def table(head: list[str], body: list[list[Any]]) -> str:
        h = "".join(f"<th>{e(x)}</th>" for x in head)
        b = "".join("<tr>" + "".join(f"<td>{e(str(x))}</td>" for x in row) + "</tr>" for row in body)
        return f"<table><thead><tr>{h}</tr></thead><tbody>{b}</tbody></table>"

    cl = [[c["cluster"], "yes" if c["held_out"] else "no", c["n_tasks"], f"{c['base']:.4f}", f"{c['tuned']:.4f}",
           f"{c['tuned'] - c['base']:+.4f}"] for c in rep["clusters"]]
    tk = [[r["task"], r["cluster"], "yes" if r["held_out"] else "no", r["metric"], r["n"], f"{r['base']:.4f}",
           f"{r['tuned']:.4f}", f"{r['delta']:+.4f}"] for r in rep["tasks"]]
    style = "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px}"
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>Held-out cluster report</title><style>{style}</style>"
            f"</head><body><h1>Held-out cluster report</h1><p>base: <code>{e(rep['base'])}</code>, tuned: "
            f"<code>{e(rep['tuned'])}</code>, zero-shot</p><img src='clusters.png' alt='clusters'>"
            f"<h2>Clusters</h2>{table(['cluster', 'held-out', 'tasks', 'base', 'tuned', 'delta'], cl)}"
            f"<h2>Tasks</h2>{table(['task', 'cluster', 'held-out', 'metric', 'n', 'base', 'tuned', 'delta'], tk)}"
            "</body></html>\n")
