"""Run reports for synthesis: counts per filter and per round, kept/dropped examples, length histograms.

Written as ``report.json`` (machine-readable) and ``report.md`` (for people), plus a PNG of the
length histogram and, for per-round methods, of the round statistics.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np


class RunReport:
    def __init__(self, method: str, config: dict[str, Any] | None = None, examples_per_reason: int = 3):
        self.method, self.config = method, config or {}
        self.counts: Counter[str] = Counter()          # drop reason (or event) -> count
        self.dropped: dict[str, list[Any]] = {}        # reason -> a few examples
        self.kept_examples: list[Any] = []
        self.rounds: list[dict[str, Any]] = []
        self.extra: dict[str, Any] = {}
        self.k = examples_per_reason

    def drop(self, reason: str, example: Any = None) -> None:
        self.counts[reason] += 1
        ex = self.dropped.setdefault(reason, [])
        if example is not None and len(ex) < self.k:
            ex.append(example)

    def keep(self, example: Any) -> None:
        self.counts["kept"] += 1
        if len(self.kept_examples) < self.k * 2:
            self.kept_examples.append(example)

    def to_dict(self, lengths: list[int], teacher: dict[str, Any] | None) -> dict[str, Any]:
        hist: dict[str, Any] = {}
        if lengths:
            c, edges = np.histogram(lengths, bins=min(10, max(1, len(set(lengths)))))
            hist = {"bins": [int(e) for e in edges], "counts": [int(x) for x in c],
                    "mean": float(np.mean(lengths)), "median": float(np.median(lengths))}
        return {"method": self.method, "counts": dict(self.counts), "rounds": self.rounds, "teacher": teacher or {},
                "length_words": hist, "kept_examples": self.kept_examples, "dropped_examples": self.dropped,
                "config": self.config, **self.extra}

    def write(self, out_dir: str | Path, lengths: list[int], teacher: dict[str, Any] | None = None) -> dict[str, Any]:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        d = self.to_dict(lengths, teacher)
        (out / "report.json").write_text(json.dumps(d, indent=1, ensure_ascii=False, default=str), encoding="utf-8")
        (out / "report.md").write_text(self.markdown(d), encoding="utf-8")
        self._plots(out, lengths)
        return d

    def markdown(self, d: dict[str, Any]) -> str:
        L = [f"# synth {self.method} report", "", "## Counts", "", "| what | count |", "|---|---|"]
        L += [f"| {k} | {v} |" for k, v in sorted(d["counts"].items(), key=lambda kv: (kv[0] != "kept", kv[0]))]
        led = d.get("ledger")
        if led:  # two exact ledgers (ShareGPT): conversations in = kept + drops, and pieces written
            cv = led["conversations"]
            L += ["", f"## Conversations: read {cv['read']} = kept {cv['kept']} + dropped "
                  f"{sum(cv['dropped'].values())}" + ("" if cv["balanced"] else " (DOES NOT BALANCE)"), "",
                  "| dropped because | conversations |", "|---|---|"] + [f"| {k} | {v} |" for k, v in cv["dropped"].items()]
            L += ["", "## Pieces", "", "| what | count |", "|---|---|"] + [f"| {k} | {v} |" for k, v in led["pieces"].items()]
        if d["rounds"]:
            keys = list(d["rounds"][0].keys())
            L += ["", "## Rounds", "", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
            L += ["| " + " | ".join(_fmt(r.get(k)) for k in keys) + " |" for r in d["rounds"]]
        t = d["teacher"]
        if t:
            L += ["", "## Teacher", ""] + [f"- {k}: {_fmt(v)}" for k, v in t.items() if k != "failure_examples"]
        h = d["length_words"]
        if h:
            L += ["", f"## Length (words): mean {h['mean']:.1f}, median {h['median']:.0f}", "", "| from | count |",
                  "|---|---|"] + [f"| {b} | {c} |" for b, c in zip(h["bins"], h["counts"])]
        L += ["", "## Kept examples", ""] + [f"- {_short(x)}" for x in d["kept_examples"]]
        L += ["", "## Dropped examples", ""]
        for reason, xs in d["dropped_examples"].items():
            L += [f"- **{reason}**: " + " / ".join(_short(x) for x in xs)]
        return "\n".join(L) + "\n"

    def _plots(self, out: Path, lengths: list[int]) -> None:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        if lengths:
            fig, ax = plt.subplots(figsize=(5, 3))
            ax.hist(lengths, bins=20)
            ax.set_xlabel("words")
            ax.set_ylabel("items")
            ax.set_title(f"{self.method}: length of kept items")
            fig.tight_layout()
            fig.savefig(out / "lengths.png", dpi=90)
            plt.close(fig)
        if self.rounds and "survival" in self.rounds[0]:
            fig, ax = plt.subplots(1, 2, figsize=(8, 3))
            r = [x["round"] for x in self.rounds]
            ax[0].plot(r, [x["survival"] for x in self.rounds], marker="o")
            ax[0].set_xlabel("round")
            ax[0].set_ylabel("survival rate")
            ax[1].plot(r, [x["mean_words"] for x in self.rounds], marker="o")
            ax[1].set_xlabel("round")
            ax[1].set_ylabel("mean instruction words")
            fig.tight_layout()
            fig.savefig(out / "rounds.png", dpi=90)
            plt.close(fig)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, dict):
        return ", ".join(f"{k}={x}" for k, x in v.items())
    return str(v)


def _short(x: Any, n: int = 160) -> str:
    s = x if isinstance(x, str) else json.dumps(x, ensure_ascii=False)
    s = s.replace("\n", " ").replace("|", "/")
    return s[:n] + ("..." if len(s) > n else "")
