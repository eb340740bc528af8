"""Markdown, HTML and the plot of the held-out report (:mod:`instructkit.eval.report`)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

COLORS = {"base": "#9e9e9e", "tuned": "#1f77b4", "oracle": "#2ca02c"}


def fmt_ci(v: float, ci: list[float] | None, signed: bool = False) -> str:
    f = "{:+.3f}" if signed else "{:.3f}"
    return f.format(v) + (f" [{f.format(ci[0])}, {f.format(ci[1])}]" if ci else "")


def _models(rep: dict) -> list[str]:
    return [m for m in ("base", "tuned", "oracle") if rep["models"].get(m)]


#: the oracle is scored on held-out tasks only (it was trained on them; seen tasks are not its concern)
NOT_SCORED = "-"


def _cell(row: dict, m: str) -> str:
    s = row["scores"].get(m)
    return fmt_ci(s["value"], s["ci"]) if s else NOT_SCORED


def cluster_table(rep: dict) -> tuple[list[str], list[list[str]]]:
    ms = _models(rep)
    head = ["cluster", "held-out", "tasks", "n examples", "n items", "chance"] + ms + ["tuned - base"]
    if "oracle" in ms:
        head.append("oracle - base")
    body = []
    for c in rep["clusters"]:
        row = [c["cluster"], "yes" if c["held_out"] else "no", str(c["n_tasks"]), str(c["n_examples"]),
               str(c["n_items"]), f"{c['chance']:.3f}"]
        row += [_cell(c, m) for m in ms]
        row.append(fmt_ci(c["delta"], c["delta_ci"], True))
        if "oracle" in ms:
            row.append(fmt_ci(c["delta_oracle"], c["delta_oracle_ci"], True) if "delta_oracle" in c else NOT_SCORED)
        body.append(row)
    return head, body


def task_table(rep: dict) -> tuple[list[str], list[list[str]]]:
    ms = _models(rep)
    head = ["task", "cluster", "held-out", "metric", "n examples", "n items", "chance"] + ms + ["tuned - base"]
    body = []
    for r in rep["tasks"]:
        body.append([r["task"], r["cluster"], "yes" if r["held_out"] else "no", r["metric"], str(r["n_examples"]),
                     str(r["n_items"]), f"{r['chance']:.3f}"]
                    + [_cell(r, m) for m in ms]
                    + [fmt_ci(r["delta"], r["delta_ci"], True)])
    return head, body


def behaviour_table(rep: dict) -> tuple[list[str], list[list[str]]]:
    head = ["task", "model", "acc", "acc_norm (chars)", "acc_token", "balanced acc", "recall per gold class",
            "predicted share"]
    body = []
    for r in rep["tasks"]:
        for m, d in r["details"].items():
            if "acc" not in d:
                continue
            rec = ", ".join(f"{k}: {v:.2f}" for k, v in (d.get("recall") or {}).items())
            share = ", ".join(f"{k}: {v:.2f}" for k, v in (d.get("pred_share") or {}).items())
            body.append([r["task"], m, f"{d['acc']:.3f}", f"{d.get('acc_norm', float('nan')):.3f}",
                         f"{d.get('acc_token', float('nan')):.3f}", f"{d.get('balanced_acc', float('nan')):.3f}",
                         rec, share])
    return head, body


def _md_table(head: list[str], body: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)] + ["| " + " | ".join(r) + " |" for r in body]


def _contamination_lines(rep: dict) -> list[str]:
    c = rep.get("contamination") or {}
    if "skipped" in c:
        return [f"Contamination check not run: {c['skipped']}."]
    lines = [f"{c['n']}-gram overlap of each held-out task's evaluated examples with `{c['mixture']}`:", ""]
    lines += [f"- {t}: {v['contaminated']}/{v['examples']} examples ({v['share']:.1%})" for t, v in c["tasks"].items()]
    return lines


def markdown(rep: dict) -> str:
    ms = _models(rep)
    fmt = (f"Format: zero-shot; context rendered with the training chat template `{rep['chat_template']}`"
           if rep["chat_template"] != "none" else "Format: zero-shot; raw text (no chat template)")
    fmt += f"; {'all templates per example' if rep['templates'] == 'all' else 'one template per example'}"
    fmt += (f"; {rep['limit']} examples per task (seed {rep['seed']})." if rep["limit"] else "; every example.")
    lines = ["# Held-out cluster report", "", "  ".join(f"{m}: `{rep['models'][m]}`" for m in ms), "", fmt, "",
             "Scores with a 95% CI from a bootstrap over examples "
             f"({rep['n_boot']} resamples, seed {rep['seed']}); deltas are paired (same items).", "",
             f"Reproduce: `{rep['command']}`", "", "![clusters](clusters.png)", "", "## Verdict", ""]
    lines += [f"- {c['verdict']}" for c in rep["clusters"]]
    lines += ["", "## Clusters", ""] + _md_table(*cluster_table(rep))
    lines += ["", "## Tasks", ""] + _md_table(*task_table(rep))
    lines += ["", "## What the models do (classification tasks)", "",
              "Accuracy by summed log-prob, by log-prob per character (acc_norm) and per token; per-class "
              "recall and balanced accuracy; how often each class was predicted (a preference shift can "
              "look like a gain).", ""] + _md_table(*behaviour_table(rep))
    lines += ["", "## Contamination", ""] + _contamination_lines(rep)
    if rep.get("not_evaluated"):
        lines += ["", "## Not evaluated", ""] + [f"- {t}: {why}" for t, why in rep["not_evaluated"].items()]
    return "\n".join(lines) + "\n"


def html_report(rep: dict) -> str:
    e = html.escape

    def table(head: list[str], body: list[list[Any]]) -> str:
        h = "".join(f"<th>{e(x)}</th>" for x in head)
        b = "".join("<tr>" + "".join(f"<td>{e(str(x))}</td>" for x in row) + "</tr>" for row in body)
        return f"<table><thead><tr>{h}</tr></thead><tbody>{b}</tbody></table>"

    ms = _models(rep)
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:1em}"
             "td,th{border:1px solid #ccc;padding:4px 8px}")
    verdicts = "".join(f"<li>{e(c['verdict'])}</li>" for c in rep["clusters"])
    cont = "".join(f"<p>{e(x)}</p>" for x in _contamination_lines(rep) if x)
    models = ", ".join(f"{m}: <code>{e(rep['models'][m])}</code>" for m in ms)
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>Held-out cluster report</title>"
            f"<style>{style}</style></head><body><h1>Held-out cluster report</h1><p>{models}; zero-shot; "
            f"chat template <code>{e(str(rep['chat_template']))}</code>; 95% CIs bootstrapped over examples.</p>"
            f"<p>Reproduce: <code>{e(rep['command'])}</code></p><img src='clusters.png' alt='clusters'>"
            f"<h2>Verdict</h2><ul>{verdicts}</ul><h2>Clusters</h2>{table(*cluster_table(rep))}"
            f"<h2>Tasks</h2>{table(*task_table(rep))}<h2>What the models do</h2>{table(*behaviour_table(rep))}"
            f"<h2>Contamination</h2>{cont}</body></html>\n")


def plot_clusters(clusters: list[dict], models: list[str], path: Path) -> None:
    """Bars per cluster and model with 95% CI error bars; a dashed line at each cluster's chance level."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n, k = len(clusters), len(models)
    width = 0.8 / k
    fig, ax = plt.subplots(figsize=(max(5, 1.4 * n + 2), 4))
    for j, m in enumerate(models):
        have = [(i, c) for i, c in enumerate(clusters) if m in c["scores"]]  # the oracle: held-out only
        xs = [i - 0.4 + width * (j + 0.5) for i, _ in have]
        vals = [c["scores"][m]["value"] for _, c in have]
        err = [[max(0.0, v - c["scores"][m]["ci"][0]) for v, (_, c) in zip(vals, have)],
               [max(0.0, c["scores"][m]["ci"][1] - v) for v, (_, c) in zip(vals, have)]]
        bars = ax.bar(xs, vals, width=width, label=m, color=COLORS[m], yerr=err, capsize=3)
        for bar, (_, c) in zip(bars, have):
            if c["held_out"]:
                bar.set_hatch("//")
    for i, c in enumerate(clusters):
        ax.hlines(c["chance"], i - 0.45, i + 0.45, colors="red", linestyles="dashed",
                  label="chance" if i == 0 else None)
    ax.set_xticks(list(range(n)))
    ax.set_xticklabels([f"{c['cluster']}\n({'held-out' if c['held_out'] else 'seen'})" for c in clusters], fontsize=8)
    ax.set_ylabel("zero-shot score (95% CI)")
    ax.set_ylim(0, 1.05)
    ax.set_title("Zero-shot before vs after tuning (hatched: held out)", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
