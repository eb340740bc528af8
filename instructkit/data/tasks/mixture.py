"""Task mixtures (FLAN / T0): examples-proportional mixing with caps, held-out clusters, manifest.

Counts (FLAN, Wei et al. 2022 / Chung et al. 2022): a task contributes at most ``cap`` examples;
its mixing rate is proportional to ``weight * min(size, rate_cap) ** (1 / temperature)``; the
mixture size defaults to the sum of ``min(size, rate_cap)`` (with temperature 1 and no weights,
every task then gives exactly ``min(size, cap, rate_cap)`` examples). T0's rule (Sanh et al. 2022)
caps each prompt file / task at ``t0_cap // num_templates`` examples and shuffles everything
together. Every random draw comes from one seeded ``random.Random``: same seed, same bytes.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from instructkit.data.tasks.formats import Format, render_row, row_key
from instructkit.data.tasks.t0 import PCDataset
from instructkit.data.tasks.task import Task


@dataclass
class MixSpec:
    cap: int = 30_000
    rate_cap: int | None = 3_000
    temperature: float = 1.0
    weights: dict[str, float] = field(default_factory=dict)  # task id or cluster -> weight
    total: int | None = None
    t0_rule: bool = False
    t0_cap: int = 500_000
    formats: dict[str, float] = field(default_factory=lambda: {"zero_shot": 1.0})
    options_prob: float = 0.5
    few_shot_k: int = 3
    seed: int = 0


def allocate(sizes: dict[str, int], rates: dict[str, float], total: int) -> dict[str, int]:
    """Largest-remainder split of ``total`` by ``rates``, never above ``sizes``; leftovers go to
    tasks that still have room (so the caps hold exactly and the total is met when possible)."""
    counts = {k: 0 for k in sizes}
    remaining, open_ = total, {k for k in sizes if sizes[k] > 0 and rates[k] > 0}
    while remaining > 0 and open_:
        z = sum(rates[k] for k in open_)
        share = {k: remaining * rates[k] / z for k in open_}
        add = {k: min(int(share[k]), sizes[k] - counts[k]) for k in open_}
        left = remaining - sum(add.values())
        if sum(add.values()) == 0:  # distribute single units by largest remainder, stable order
            for k in sorted(open_, key=lambda k: (-(share[k] - int(share[k])), k))[:left]:
                add[k] += 1
        for k, v in add.items():
            counts[k] += v
        remaining = total - sum(counts.values())
        open_ = {k for k in open_ if counts[k] < sizes[k]}
    return counts


def plan_counts(sources: dict[str, tuple[int, int, str]], spec: MixSpec) -> dict[str, int]:
    """``sources[id] = (available, num_templates, cluster)`` -> examples per source."""
    sizes = {}
    for k, (n, n_tpl, _) in sources.items():
        cap = min(spec.cap, spec.t0_cap // max(n_tpl, 1)) if spec.t0_rule else spec.cap
        sizes[k] = min(n, cap)
    rc = spec.rate_cap or max(sizes.values(), default=0)
    base = {k: min(s, rc) for k, s in sizes.items()}
    rates = {k: spec.weights.get(k, spec.weights.get(sources[k][2], 1.0)) * base[k] ** (1.0 / spec.temperature)
             for k in sources}
    if spec.t0_rule and not spec.weights and spec.total is None:
        return sizes  # T0: every capped data set whole, shuffled together
    total = spec.total if spec.total is not None else sum(base.values())
    return allocate(sizes, rates, total)


def _pick_format(rng: random.Random, spec: MixSpec, task: Task) -> str:
    fmts = {f: w for f, w in spec.formats.items() if task.has_rationale or not Format.parse(f).cot}
    if not fmts:  # a CoT-only mixture still needs an answer for tasks without rationales
        fmts = {f.removesuffix("_cot"): w for f, w in spec.formats.items()}
    names = sorted(fmts)
    return rng.choices(names, weights=[fmts[n] for n in names])[0]


def _record(prompt: str, target: str, meta: dict[str, str]) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": target}],
            "meta": meta}


def build_mixture(tasks: list[Task], spec: MixSpec, hold_out: list[str] = (),
                  t0: list[PCDataset] = ()) -> tuple[list[dict], dict[str, Any]]:
    """The mixture records (shuffled) and the manifest (without content hash / totals)."""
    rng = random.Random(spec.seed)
    # a held-out entry is a cluster (FLAN) or a task id (T0-style: one data set of a seen cluster)
    held = [t for t in tasks if t.cluster in hold_out or t.id in hold_out]
    train = [t for t in tasks if not (t.cluster in hold_out or t.id in hold_out)]
    t0_train = [d for d in t0 if d.cluster not in hold_out]
    rows = {t.id: t.load_split(t.train_split) for t in train}
    sources = {t.id: (len(rows[t.id]), len(t.templates), t.cluster) for t in train}
    # T0 files: one source per template file (T0 caps per prompt: t0_cap / templates of the data set)
    for d in t0_train:
        for tid, recs in d.templates.items():
            sources[tid] = (len(recs), len(d.templates), d.cluster)
    counts = plan_counts(sources, spec)
    records: list[dict] = []
    manifest_tasks: dict[str, Any] = {}
    for t in train:
        n = counts[t.id]
        idx = rng.sample(range(len(rows[t.id])), n)
        tally: Counter = Counter()
        few = any(Format.parse(f).few_shot for f in spec.formats)
        keys = [row_key(r) for r in rows[t.id]] if few else None
        for i in idx:
            tpl = rng.choice(t.templates)  # uniformly per example (FLAN)
            fmt = _pick_format(rng, spec, t)
            options = rng.random() < spec.options_prob
            prompt, target = render_row(t, tpl, rows[t.id][i], fmt, options, rng, rows[t.id], spec.few_shot_k,
                                         keys)
            records.append(_record(prompt, target, {"task": t.id, "template": tpl.id, "cluster": t.cluster,
                                                     "fmt": fmt}))
            tally[tpl.id] += 1
        manifest_tasks[t.id] = {"cluster": t.cluster, "ref": t.ref, "count": n, "available": len(rows[t.id]),
                                "templates": dict(sorted(tally.items()))}
    for d in t0_train:
        tally = Counter()
        for tid, recs in d.templates.items():
            for i in sorted(rng.sample(range(len(recs)), counts[tid])):
                p, c = recs[i]
                records.append(_record(p, c, {"task": d.id, "template": tid, "cluster": d.cluster,
                                              "fmt": "zero_shot"}))
                tally[tid] += 1
        manifest_tasks[d.id] = {"cluster": d.cluster, "ref": None, "count": sum(tally.values()), "available": len(d),
                                "templates": dict(sorted(tally.items())), "skipped": d.skipped}
    rng.shuffle(records)  # T0 and FLAN: all prompts of all data sets shuffled together
    clusters = Counter()
    for k, v in manifest_tasks.items():
        clusters[v["cluster"]] += v["count"]
    manifest = {
        "seed": spec.seed,
        "caps": {"cap": spec.cap, "rate_cap": spec.rate_cap, "temperature": spec.temperature,
                 "t0_rule": spec.t0_rule, "t0_cap": spec.t0_cap, "total": spec.total, "weights": spec.weights,
                 "formats": spec.formats, "options_prob": spec.options_prob, "few_shot_k": spec.few_shot_k},
        "clusters": dict(sorted(clusters.items())),
        "tasks": manifest_tasks,
        "held_out": {"clusters": list(hold_out), "tasks": [t.id for t in held],
                     "refs": {t.id: t.ref for t in held}},
        "train_tasks": list(manifest_tasks),
    }
    return records, manifest


def write_jsonl(records: list[dict]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False, sort_keys=True) + "\n" for r in records).encode()


def add_totals(manifest: dict, records: list[dict], data: bytes, tokenizer: Any = None) -> dict:
    manifest["content_hash"] = hashlib.sha256(data).hexdigest()
    per_task: dict[str, Counter] = {}
    texts = [" ".join(m["content"] for m in r["messages"]) for r in records]
    ntok = None
    if tokenizer is not None:
        ntok = [len(x) for x in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    for i, (r, text) in enumerate(zip(records, texts)):
        c = per_task.setdefault(r["meta"]["task"], Counter())
        c["chars"] += len(text)
        c["words"] += len(text.split())
        if ntok is not None:
            c["tokens"] += ntok[i]
    for tid, c in per_task.items():
        manifest["tasks"][tid].update(dict(c))
    tot = Counter()
    for c in per_task.values():
        tot.update(c)
    manifest["totals"] = {"examples": len(records), **dict(tot)}
    return manifest
