"""Markdown, HTML and the plot of the held-out report (:mod:`instructkit.eval.report`)."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

COLORS = {"base": "#9e9e9e", "calibrated base": "#ff7f0e", "tuned": "#1f77b4", "oracle": "#2ca02c"}


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


def _pm(d: dict | None) -> str:
    return "-" if not d else f"{d['mean']:.3f} ± {d['sd']:.3f} ({d['n_seeds']} seed{'s' if d['n_seeds'] > 1 else ''})"


def _arrow(a: Any, b: Any) -> str:
    return "-" if a is None or b is None else f"{a:.3f} -> {b:.3f}"


def controls_table(rep: dict) -> tuple[list[str], list[list[str]]]:
    """Per cluster: raw and calibrated base, the best baseline, tuned and oracle (mean ± SD over seeds),
    balanced accuracy, margin AUC and twin consistency (base -> mean of tuned seeds)."""
    head = ["cluster", "held-out", "best baseline (chance)", "base", "calibrated base", "tuned mean ± SD",
            "oracle mean ± SD", "balanced acc", "margin AUC", "twins both right", "verdict"]
    body = []
    for c in rep["clusters"]:
        ctl = c.get("controls")
        if not ctl:
            continue
        bar = ctl["calibrated_bar"]
        seeds = ctl.get("tuned_seeds") or []

        def tmean(k: str) -> Any:
            xs = [s[k] for s in seeds if s.get(k) is not None]
            return sum(xs) / len(xs) if xs else None
        body.append([c["cluster"], "yes" if c["held_out"] else "no", f"{ctl['chance']:.3f}",
                     fmt_ci(ctl["base"]["acc"], ctl["base"]["ci"]),
                     fmt_ci(bar["value"], bar["ci"]) + f" ({bar['kind']})", _pm(ctl.get("tuned")), _pm(ctl.get("oracle")),
                     _arrow(ctl["base"].get("balanced_acc"), tmean("balanced_acc")),
                     _arrow(ctl["base"].get("margin_auc"), tmean("margin_auc")),
                     _arrow(ctl["base"].get("consistency"), tmean("consistency")),
                     (c.get("decision") or {}).get("verdict", "(seen: sanity check)")])
    return head, body


def seed_lines(rep: dict) -> list[str]:
    """Every seed's paired deltas (item CIs) - the numbers the verdict rules read."""
    lines = []
    for c in rep["clusters"]:
        for s in (c.get("controls") or {}).get("tuned_seeds") or []:
            dc = s.get("delta_consistency")
            lines.append(f"- {c['cluster']} {s['label']}: acc {fmt_ci(s['acc'], s['ci'])}; vs raw base "
                         f"{fmt_ci(s['delta_raw'][0], s['delta_raw'][1:], True)}; vs calibrated base "
                         f"{fmt_ci(s['delta_calibrated'][0], s['delta_calibrated'][1:], True)}; twin consistency "
                         + ("n/a" if not dc else fmt_ci(dc[0], dc[1:], True)))
    return lines


def _seed0(rep: dict, ms: list[str]) -> list[str]:
    """Column names: with several training seeds these columns are seed 0's (the controls table has all)."""
    multi = any("@" in m for m in rep["models"])
    return [f"{m} (seed 0)" if multi and m != "base" else m for m in ms]


def cluster_table(rep: dict) -> tuple[list[str], list[list[str]]]:
    ms = _models(rep)
    head = ["cluster", "held-out", "tasks", "n examples", "n items", "chance"] + _seed0(rep, ms) + ["tuned - base"]
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
            "predicted share", "margin AUC"]
    body = []
    for r in rep["tasks"]:
        for m, d in r["details"].items():
            if "acc" not in d:
                continue
            rec = ", ".join(f"{k}: {v:.2f}" for k, v in (d.get("recall") or {}).items())
            share = ", ".join(f"{k}: {v:.2f}" for k, v in (d.get("pred_share") or {}).items())
            body.append([r["task"], m, f"{d['acc']:.3f}", f"{d.get('acc_norm', float('nan')):.3f}",
                         f"{d.get('acc_token', float('nan')):.3f}", f"{d.get('balanced_acc', float('nan')):.3f}",
                         rec, share, _f((r.get("controls") or {}).get(m, {}) or {}, "margin_auc")])
    return head, body


def _f(d: dict, k: str) -> str:
    v = d.get(k)
    return "-" if v is None else f"{v:.3f}"


def baseline_lines(rep: dict) -> list[str]:
    """Per task: the answer-blind baselines on the evaluated items, how they were drawn, calibration,
    unparsed generations and BPE boundary merges."""
    out = []
    for r in rep["tasks"]:
        b = r.get("baselines") or {}
        al = ", ".join(f"{k.replace('always_option_', 'always option ')}: {v:.3f}" for k, v in (b.get("always") or {}).items())
        samp = r.get("sampling") or {}
        cal = "; ".join(f"{k.replace('calibrated_', '').replace('_', ' ')} calibrated base "
                        f"{fmt_ci(v['value'], v['ci'])} (balanced {v['balanced_acc']:.3f})"
                        for k, v in (r.get("calibrated") or {}).items())
        merges = r.get("ll_boundary_merges") or {}
        out.append(f"- {r['task']}: best baseline {b.get('best', {}).get('name', '-')} "
                   f"{b.get('best', {}).get('acc', float('nan')):.3f}" + (f" ({al})" if al else "")
                   + (f"; stratified {samp['per_class']} per class" if samp.get("stratified") else "")
                   + (f"; {samp['twins']} contrast twins" if samp.get("twins") else "")
                   + (f"; {cal}" if cal else "")
                   + (f"; unparsed answers {r['unparsed']}" if any((r.get("unparsed") or {}).values()) else "")
                   + (f"; BPE boundary merges {merges.get('merged')}/{merges.get('requests')} requests" if merges else "")
                   + (f"; {samp['split_note']}" if samp.get("split_note") else "")
                   + ("; with / without OPTIONS: " + ", ".join(
                       f"{m} " + " / ".join(f"{(v.get(k) or {}).get('value', float('nan')):.3f} (n={(v.get(k) or {}).get('n', 0)})"
                                            for k in ("with_options", "without_options"))
                       for m, v in r["by_options"].items()) if r.get("by_options") else ""))
    return out


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
    from instructkit.eval.verdict import RULES
    lines += ["", "Rules (checked in this order): " + "; ".join(f"**{k}**: {v}" for k, v in RULES.items()) + ".", ""]
    if rep.get("preregistered"):
        lines += ["Pre-registered settings: `" + str(rep["preregistered"]) + "`", ""]
    ctl = controls_table(rep)
    if ctl[1]:
        lines += ["## Controls", "", "Chance is the best answer-blind baseline on the evaluated items (majority class / "
                  "always option k); the calibrated base is the stronger of content-free (Zhao et al. 2021) and "
                  "masked-slot calibration; tuned and oracle are mean ± SD over training seeds.", ""] + _md_table(*ctl)
        lines += ["", "Per seed (paired 95% CIs over items):", ""] + seed_lines(rep)
    lines += ["", "## Baselines and sampling per task", ""] + baseline_lines(rep)
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
            f"<h2>Verdict</h2><ul>{verdicts}</ul><h2>Controls</h2>{table(*controls_table(rep))}"
            f"<ul>{''.join(f'<li>{e(x[2:])}</li>' for x in seed_lines(rep) + baseline_lines(rep))}</ul>"
            f"<h2>Clusters</h2>{table(*cluster_table(rep))}"
            f"<h2>Tasks</h2>{table(*task_table(rep))}<h2>What the models do</h2>{table(*behaviour_table(rep))}"
            f"<h2>Contamination</h2>{cont}</body></html>\n")


def plot_clusters(clusters: list[dict], models: list[str], path: Path) -> None:
    """Bars per cluster and model with 95% CI error bars; a dashed line at each cluster's chance level."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clusters = [dict(c, scores=dict(c["scores"])) for c in clusters]  # the report's own dicts stay as they are
    if any((c.get("controls") or {}).get("calibrated_bar") for c in clusters) and "base" in models:
        for c in clusters:  # the calibrated base as a bar of its own, beside the raw base
            bar = (c.get("controls") or {}).get("calibrated_bar")
            if bar:
                c.setdefault("scores", {})["calibrated base"] = {"value": bar["value"],
                                                                 "ci": bar["ci"] or [bar["value"]] * 2}
        models = [models[0], "calibrated base"] + list(models[1:])
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
                  label="chance (best baseline)" if i == 0 else None)
    ax.set_xticks(list(range(n)))
    ax.set_xticklabels([f"{c['cluster']}\n({'held-out' if c['held_out'] else 'seen'})" for c in clusters], fontsize=8)
    ax.set_ylabel("zero-shot score (95% CI)")
    ax.set_ylim(0, 1.05)
    ax.set_title("Zero-shot before vs after tuning (hatched: held out)", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
