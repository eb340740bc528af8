"""ROUGE-L novelty filter (self-instruct's bottleneck): instructkit's indexed filter vs the rouge-score loop.

The reference is the Alpaca script's loop: every new instruction is tokenised once with rouge-score's
default tokenizer and scored with ``rouge_scorer._score_lcs`` against every kept instruction; it is
kept when no score reaches the threshold. (Alpaca spreads that loop over a process pool; on this 2-core
machine a pool gives at most 2x, so the single-process loop is the reference and the ratio is reported
as is.) Both run on the same instructions in the same order; the kept sets must be identical.

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
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
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


def ours(texts: list[str], thr: float) -> tuple[list[int], int, int]:
    from instructkit.synth.rouge import RougeLFilter

    f = RougeLFilter(thr)
    kept, pairs = [], 0
    for i, t in enumerate(texts):
        pairs += len(f)
        if f.offer(t).keep:
            kept.append(i)
    return kept, pairs, f.exact_lcs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--ref-prefix", type=int, default=3000, help="run the reference loop on the first N only")
    ap.add_argument("--threshold", type=float, default=0.7)
    ap.add_argument("--dup-rate", type=float, default=0.0, help="fraction of edited near-repeats (a teacher's pool)")
    a = ap.parse_args()
    texts = with_near_duplicates(instructions(a.n), a.dup_rate)
    print(f"{len(texts)} instructions; load {os.getloadavg()[0]:.1f}", flush=True)
    m = min(a.ref_prefix, len(texts))
    t0, c0 = time.perf_counter(), time.process_time()
    ref_kept, ref_pairs = reference(texts[:m], a.threshold)
    t_ref, c_ref = time.perf_counter() - t0, time.process_time() - c0
    t0 = time.perf_counter()
    our_kept_prefix, _, _ = ours(texts[:m], a.threshold)
    t_our_prefix = time.perf_counter() - t0
    same = our_kept_prefix == ref_kept
    t0, c0 = time.perf_counter(), time.process_time()
    our_kept, pairs, exact = ours(texts, a.threshold)
    t_our, c_our = time.perf_counter() - t0, time.process_time() - c0
    # the reference's cost grows with the pairs compared; extrapolate it per pair for the full run
    per_pair = t_ref / max(1, ref_pairs)
    t_ref_full = t_ref if m == len(texts) else per_pair * pairs
    res = {"n": len(texts), "dup_rate": a.dup_rate, "ref_prefix": m, "identical_kept_on_prefix": same,
           "kept_prefix": len(ref_kept), "dropped_prefix": m - len(ref_kept), "ref_pairs_prefix": ref_pairs,
           "ref_s_prefix": round(t_ref, 2), "ref_cpu_s_prefix": round(c_ref, 2), "ours_cpu_s_full": round(c_our, 2), "ours_s_prefix": round(t_our_prefix, 3),
           "speedup_prefix": round(t_ref / t_our_prefix, 1), "kept_full": len(our_kept), "pairs_full": pairs,
           "dropped_full": len(texts) - len(our_kept), "exact_lcs_full": exact, "ours_s_full": round(t_our, 2),
           "ref_s_full": round(t_ref_full, 1), "ref_full_is_extrapolated": m != len(texts),
           "speedup_full": round(t_ref_full / t_our, 1), "load": os.getloadavg()}
    print(json.dumps(res, indent=1))
    if not same:
        sys.exit("kept sets differ")


if __name__ == "__main__":
    main()
