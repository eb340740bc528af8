"""ROUGE-L novelty filter (self-instruct's bottleneck): instructkit's indexed filter vs the rouge-score loop.

The reference is the Alpaca script's loop: every new instruction is tokenised once with rouge-score's
default tokenizer and scored with ``rouge_scorer._score_lcs`` against every kept instruction; it is
kept when no score reaches the threshold. (Alpaca spreads that loop over a process pool; on this 2-core
machine a pool gives at most 2x, so the single-process loop is the reference and the ratio is reported
as is; ``reference_pool`` runs Alpaca's ``Pool.map`` form with ``--ref-procs`` processes, one pool for the
run.) Both run on the same instructions in the same order; the kept sets must be identical. ``--rounds N``
interleaves reference, ours, pooled reference, ours on all instructions; the median round is reported with
the spread. No GEMM ceiling applies (string work): the report says so instead of an MFU.

Data: real-like instructions from ../shared/data: self-instruct seeds + user-oriented instructions,
GSM8K questions (train + test) and T0 prompts (their last 40 words: the template's question part, 60 per
template, so near-duplicates are frequent as in a real pool), shuffled with a fixed seed.

A teacher's pool also holds its own near-repeats (Alpaca's generation dropped most of what it produced as
too similar); ``--dup-rate R`` makes a fraction R of the instructions such repeats: an earlier
instruction with 1 to ~40% of its words edited (a word dropped, two swapped, or one replaced by a word of
another instruction), so their ROUGE-L against the original spans both sides of 0.7 and the kept sets
are tested on real drops, ties near the threshold included. The report gives the drops in the prefix.

    python bench/bench_rouge.py                       # 20,000 instructions, reference on a 3,000 prefix
    python bench/bench_rouge.py --n 20000 --ref-prefix 1500 --dup-rate 0.3   # drops in the prefix (~3-4 min, 1 core)
    python bench/bench_rouge.py --ref-prefix 20000    # the full reference loop (hours on 2 loaded cores)
    python bench/bench_rouge.py --n 2000 --ref-prefix 150 --dup-rate 0.3   # smoke
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from common import SHARED  # noqa: E402


def instructions(n: int, seed: int = 0) -> list[str]:
    out: list[str] = []
    for name in ("seed_tasks.jsonl", "user_oriented_instructions.jsonl"):
        with open(SHARED / "self_instruct" / name) as f:
            out += [json.loads(x)["instruction"] for x in f if x.strip()]
    for split in ("train", "test"):
        with open(SHARED / "gsm8k" / f"{split}.jsonl") as f:
            out += [json.loads(x)["question"] for x in f if x.strip()]
    t0 = []
    for p in sorted((SHARED / "t0_train").glob("*.jsonl")):
        with open(p) as f:
            for k, line in enumerate(f):
                if k >= 60:
                    break
                # the last 40 words: the template's question part, so prompts of one template are near-duplicates
                t0.append(" ".join(json.loads(line)["prompt"].split()[-40:]))
    rng = random.Random(seed)
    rng.shuffle(t0)
    out += t0[: max(0, n - len(out))]
    rng.shuffle(out)
    return out[:n]


def with_near_duplicates(texts: list[str], rate: float, seed: int = 0) -> list[str]:
    """Replace a fraction ``rate`` of ``texts`` (never the first 20) by edited copies of earlier ones."""
    if rate <= 0:
        return texts
    rng = random.Random(f"dups/{seed}")
    out = list(texts)
    for i in range(20, len(out)):
        if rng.random() >= rate:
            continue
        words = out[rng.randrange(i)].split()
        donor = out[rng.randrange(len(out))].split() or ["task"]
        for _ in range(rng.randint(1, max(1, int(0.4 * len(words))))):
            op, j = rng.randrange(3), rng.randrange(max(1, len(words)))
            if op == 0 and len(words) > 2:
                del words[j]
            elif op == 1 and j + 1 < len(words):
                words[j], words[j + 1] = words[j + 1], words[j]
            elif words:
                words[j] = rng.choice(donor)
        out[i] = " ".join(words)
    return out


def reference(texts: list[str], thr: float) -> tuple[list[int], int]:
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    kept_tokens: list[list[str]] = []
    kept, pairs = [], 0
    for i, t in enumerate(texts):
        toks = scorer._tokenizer.tokenize(t)
        pairs += len(kept_tokens)
        if not any(rouge_scorer._score_lcs(toks, k).fmeasure >= thr for k in kept_tokens):
            kept_tokens.append(toks)
            kept.append(i)
    return kept, pairs


def _lcs_f(new: list[str], old: list[str]) -> float:
    from rouge_score import rouge_scorer
    return rouge_scorer._score_lcs(new, old).fmeasure


def reference_pool(texts: list[str], thr: float, pool: object, procs: int) -> tuple[list[int], int]:
    """Alpaca's own form: ``pool.map(partial(_score_lcs, new_tokens), all_kept_tokens)`` per instruction - on its
    best setting here: one pool for the whole run (Alpaca opens a new ``Pool`` per instruction) and one chunk per
    process."""
    from functools import partial

    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    kept_tokens: list[list[str]] = []
    kept, pairs = [], 0
    for i, t in enumerate(texts):
        toks = scorer._tokenizer.tokenize(t)
        pairs += len(kept_tokens)
        scores = pool.map(partial(_lcs_f, toks), kept_tokens, chunksize=max(1, -(-len(kept_tokens) // procs))) \
            if kept_tokens else []
        if not any(f >= thr for f in scores):
            kept_tokens.append(toks)
            kept.append(i)
    return kept, pairs


def ours(texts: list[str], thr: float) -> tuple[list[int], int, int]:
    from instructkit.synth.rouge import RougeLFilter

    f = RougeLFilter(thr)
    kept, pairs = [], 0
    for i, t in enumerate(texts):
        pairs += len(f)
        if f.offer(t).keep:
            kept.append(i)
    return kept, pairs, f.exact_lcs


def timed(fn: Callable[[], tuple]) -> tuple[tuple, float, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--ref-prefix", type=int, default=3000, help="run the reference loop on the first N only")
    ap.add_argument("--threshold", type=float, default=0.7)
    ap.add_argument("--dup-rate", type=float, default=0.0, help="fraction of edited near-repeats (a teacher's pool)")
    ap.add_argument("--ref-procs", type=int, default=2, help="processes of the pooled reference (0: not run)")
    ap.add_argument("--rounds", type=int, default=1, help="interleaved rounds: median round + spread")
    ap.add_argument("--json", default=None, help="write the whole run here")
    a = ap.parse_args()
    texts = with_near_duplicates(instructions(a.n), a.dup_rate)
    m = min(a.ref_prefix, len(texts))
    head = common.header("none (string work)", None)
    print(head, flush=True)
    print(f"{len(texts)} instructions, reference on the first {m}, threshold {a.threshold}, dup rate {a.dup_rate}",
          flush=True)
    started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    pool = None
    if a.ref_procs > 0:
        import multiprocessing as mp
        pool = mp.get_context("fork").Pool(a.ref_procs)  # made before any clock starts, kept for the whole run
    want: dict[str, list[int]] = {}

    def one(c: str, rnd: int) -> dict:
        load = os.getloadavg()[0]
        if c == "reference":
            (kept, pairs), wall, cpu = timed(lambda: reference(texts[:m], a.threshold))
        elif c == "reference_pool":
            (kept, pairs), wall, cpu = timed(lambda: reference_pool(texts[:m], a.threshold, pool, a.ref_procs))
        elif c == "ours_prefix":
            (kept, pairs, _), wall, cpu = timed(lambda: ours(texts[:m], a.threshold))
        else:
            (kept, pairs, exact), wall, cpu = timed(lambda: ours(texts, a.threshold))
        key = "full" if c == "ours_full" else "prefix"
        same = want.setdefault(key, kept) == kept  # every run of a slice must keep the same instructions
        r = {"kept": len(kept), "dropped": (len(texts) if key == "full" else m) - len(kept),
             "pairs": pairs, "wall_s": round(wall, 3), "cpu_s": round(cpu, 3), "same_kept_as_first_run": same,
             "load_avg_1m_before": load, **({"exact_lcs": exact} if c == "ours_full" else {})}
        print(f"round {rnd + 1}/{a.rounds}: {c} {r}", flush=True)
        return r
    contenders = ["reference", "ours_prefix"] + (["reference_pool"] if pool else []) + ["ours_full"]
    try:
        runs = common.interleaved(contenders, a.rounds, one)
    finally:
        if pool:
            pool.terminate()
    wall = {c: common.spread([r["wall_s"] for r in rs]) for c, rs in runs.items()}
    med = {c: common.median_round(rs, "wall_s") for c, rs in runs.items()}
    ref, ourp, ourf = med["reference"], med["ours_prefix"], med["ours_full"]
    best_ref = min((med[c] for c in ("reference", "reference_pool") if c in med), key=lambda r: r["wall_s"])
    per_pair = best_ref["wall_s"] / max(1, best_ref["pairs"])  # the reference's cost grows with the pairs
    ref_full = best_ref["wall_s"] if m == len(texts) else per_pair * ourf["pairs"]
    same = all(r["same_kept_as_first_run"] for rs in runs.values() for r in rs)
    print("\n" + common.header("none (string work)", None))
    print(common.NO_CEILING.format(what="tokenising strings and longest common subsequences"))
    print(f"\n{a.rounds} interleaved round(s), wall seconds: median [min-max]; kept sets identical across "
          f"contenders and rounds: {same}")
    print("| contender | slice | kept / dropped | pairs | wall s | CPU s (median round) | ours speed-up |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for c, r in med.items():
        sl = f"all {len(texts)}" if c == "ours_full" else f"first {m}"
        sp = (f"{r['wall_s'] / ourp['wall_s']:.0f}x" if c.startswith("reference") else "")
        print(f"| {c} | {sl} | {r['kept']} / {r['dropped']} | {r['pairs']} | {common.fmt_spread(wall[c], 3)} | "
              f"{r['cpu_s']}{' (parent only)' if c == 'reference_pool' else ''} | {sp} |")
    summary = {"identical_kept": same, "wall_s": wall, "median_round": med,
               "speedup_prefix": ref["wall_s"] / ourp["wall_s"],
               "speedup_prefix_vs_best_reference": best_ref["wall_s"] / ourp["wall_s"],
               "ref_full_s": round(ref_full, 1), "ref_full_is_extrapolated": m != len(texts),
               "speedup_full": ref_full / ourf["wall_s"]}
    print(f"all {len(texts)} instructions: ours {ourf['wall_s']:.2f} s for {ourf['pairs']} pairs ({ourf.get('exact_lcs')} exact LCS); best "
          f"reference {ref_full:.0f} s{' extrapolated per pair from the prefix' if m != len(texts) else ''} -> "
          f"x{summary['speedup_full']:.0f}")
    common.write_json(a.json, {"bench": "rouge", "date": started, "args": vars(a), "hardware": common.hardware(),
                               "header": head, "rounds": runs, "summary": summary})
    if not same:
        sys.exit("kept sets differ")


if __name__ == "__main__":
    main()
