"""Composition plot of a mixture and the held-out report line."""

from __future__ import annotations

from typing import Any


def plot_composition(manifest: dict[str, Any], path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    held = set(manifest["held_out"]["clusters"])
    clusters = dict(manifest["clusters"])
    for c in held:
        clusters.setdefault(c, 0)
    tasks = manifest["tasks"]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(14, max(4, 0.28 * len(tasks) + 1)),
                                 gridspec_kw={"width_ratios": [1, 2]})
    names = sorted(clusters)
    a1.barh(names, [clusters[n] for n in names], color=["lightgrey" if n in held else "tab:blue" for n in names])
    for i, n in enumerate(names):
        if n in held:
            a1.text(0, i, " held out (zero-shot eval)", va="center", color="tab:red")
    a1.set_title("examples per cluster")
    tnames = sorted(tasks, key=lambda t: (tasks[t]["cluster"], t))
    a2.barh(tnames, [tasks[t]["count"] for t in tnames])
    a2.tick_params(axis="y", labelsize=7)
    a2.set_title(f"examples per task (train; held out: {', '.join(sorted(held)) or 'none'})")
    for ax in (a1, a2):
        ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def held_out_line(manifest: dict[str, Any]) -> str:
    h = manifest["held_out"]
    return (f"train: {len(manifest['train_tasks'])} tasks ({', '.join(manifest['train_tasks'])}); "
            f"held out ({', '.join(h['clusters']) or 'none'}): {', '.join(h['tasks']) or 'none'}")
