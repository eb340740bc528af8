"""Serve benchmark: the real ``openai`` SDK (async) as load against instructkit serve and FastChat, and HF
``generate`` on the same requests.

Load (the default is the full load of issue #26): ``--clients`` 32 concurrent clients x ``--requests`` 20 each,
a client sends its next request when the previous one is answered; request j of client i streams (with
``include_usage``) when i + j is even; ``max_tokens`` cycles through ``--lengths`` 16,32,64,128 (both streaming
modes get every length); greedy; prompts cycle through the 80 Vicuna-bench questions (../shared/data/vicuna_bench).
Every response is checked: no error, finish_reason stop/length, and a ``length`` finish has exactly max_tokens
tokens (nothing lost or truncated).

Contenders (model SmolLM2-135M-Instruct, float32 for all, ``--threads`` torch/OpenMP threads each):
* ``instructkit``: ``instructkit serve MODEL --max-batch-size CLIENTS`` (continuous batching);
* ``fastchat``: FastChat's controller + model_worker + openai_api_server (PyPI ``fschat``, the Vicuna stack;
  ``--fastchat-concurrency`` is its worker's ``--limit-worker-concurrency``, default 5 = FastChat's); skipped with
  the reason printed when it is not installed or does not start;
* ``hf_batch``: HF ``generate`` in-process on static batches of CLIENTS same-length requests (left-padded): HF's
  best throughput setting, no HTTP, no streaming, latency = the batch's time;
* ``hf``: HF ``generate`` one request at a time, in-process, on the first ``--hf-requests`` requests.

Reported per contender, over ``--rounds`` interleaved rounds (instructkit, fastchat, hf_batch, hf, instructkit,
...): the median round's completion tokens/s with [min-max] and spread, p50/p99 latency, p50/p99 time to first
token (streamed requests), errors and bad responses over all rounds, and MFU: useful forward FLOPs (2 N per
prompt token, our chat template's rendering of each answered request, + 2 N per completion token; attention not
counted) / wall / the float32 GEMM ceiling measured in the same run at the model's linear shapes (M=2048; decoding
runs GEMMs of M = batch rows, far below that ceiling, so serving MFU is low by nature).

    python bench/bench_serve.py                                   # the full load, 1 round
    python bench/bench_serve.py --rounds 3 --json runs/bench/serve.json
    python bench/bench_serve.py --quick                           # smoke: 4 clients x 2 requests, lengths 8,16
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from serve_load import prompts, request_plan  # noqa: E402

GEMM_SHAPES = [(576, 1536), (1536, 576), (576, 576), (576, 192)]  # SmolLM2-135M linear layers (in, out)
CONTENDERS = ("instructkit", "fastchat", "hf_batch", "hf")


def ceiling_child(args: argparse.Namespace) -> None:
    import torch

    from instructkit.models import load_model
    torch.set_num_threads(args.threads)
    n = sum(p.numel() for p in load_model(args.model, dtype="float32").parameters())  # tied head counted once
    common.emit({"variant": "ceiling", "params": n,
                 "ceiling": common.matmul_ceiling("float32", GEMM_SHAPES, tokens=2048, min_s=0.3)})


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--contenders", default=",".join(CONTENDERS), help=f"comma-separated, of {', '.join(CONTENDERS)}")
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--requests", type=int, default=20, help="requests per client")
    ap.add_argument("--lengths", type=lambda s: [int(x) for x in s.split(",")], default=[16, 32, 64, 128],
                    help="max_tokens values, cycled")
    ap.add_argument("--hf-requests", type=int, default=40, help="requests HF generate serves one at a time")
    ap.add_argument("--rounds", type=int, default=1, help="interleaved rounds: median round + spread")
    ap.add_argument("--quick", action="store_true", help="smoke: 4 clients x 2 requests, lengths 8,16, hf 4")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1") or 1),
                    help="torch/OpenMP threads per contender (default: $OMP_NUM_THREADS, else 1)")
    ap.add_argument("--fastchat-concurrency", type=int, default=5,
                    help="FastChat worker --limit-worker-concurrency (its default 5)")
    ap.add_argument("--port", type=int, default=18400)
    ap.add_argument("--start-timeout", type=float, default=600, help="seconds a server may take to come up")
    ap.add_argument("--logdir", default="/tmp/bench_serve", help="server logs")
    ap.add_argument("--json", default=None, help="write the whole run here")
    ap.add_argument("--variant", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.quick:
        args.clients, args.requests, args.lengths, args.hf_requests = 4, 2, [8, 16], 4
    return args


def report(args: argparse.Namespace, runs: dict[str, list[dict]], params: int | None, gf: float | None) -> dict:
    summary: dict[str, Any] = {}
    ik = common.median_round(runs.get("instructkit", []), "tokens_per_s")
    print(f"\nserve load: {args.clients} clients x {args.requests} requests, lengths {args.lengths}, "
          f"{args.rounds} interleaved round(s), float32, {args.threads} thread(s) per contender; median round "
          "[min-max over rounds]")
    print("| contender | requests/round | errors | bad | tokens/s | instructkit speed-up | p50 / p99 latency s "
          "| p50 / p99 TTFT s | MFU |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for v, rs in runs.items():
        med = common.median_round(rs, "tokens_per_s")
        errs = sum(r.get("errors", 0) for r in rs if "error" not in r)
        failed = [r["error"] for r in rs if "error" in r]
        if med is None:
            print(f"| {v} | failed: {failed[0].splitlines()[0][:100] if failed else '?'} | | | | | | | |")
            summary[v] = {"failed": failed}
            continue
        tps = common.spread([r.get("tokens_per_s") for r in rs if "error" not in r])
        mfu = (2.0 * params * (med["prompt_tokens"] + med["completion_tokens"]) / med["wall_s"] / (gf * 1e9)
               if params and gf else None)
        ratio = ik["tokens_per_s"] / med["tokens_per_s"] if ik and med["tokens_per_s"] else None
        def f2(x: float | None) -> str:
            return "-" if x is None else f"{x:.2f}"
        ttft = f"{f2(med.get('p50_ttft_s'))} / {f2(med.get('p99_ttft_s'))}" if med.get("p50_ttft_s") is not None else "-"
        print(f"| {v} | {med['requests']} | {errs}{f' (+{len(failed)} rounds failed)' if failed else ''} | "
              f"{sum(r.get('bad_responses', 0) for r in rs if 'error' not in r)} | {common.fmt_spread(tps)} | "
              f"{'-' if ratio is None else f'{ratio:.2f}x'} | {f2(med['p50_latency_s'])} / {f2(med['p99_latency_s'])} | "
              f"{ttft} | {'-' if mfu is None else f'{mfu:.1%}'} |")
        summary[v] = {"median_round": med, "tokens_per_s": tps, "mfu": mfu, "instructkit_speedup": ratio,
                      "errors_all_rounds": errs, "failed_rounds": failed}
    for v, rs in runs.items():
        for r in rs:
            if "error" in r:  # the whole round failed (a server that did not come up): its log tail
                print(f"{v} round {r.get('round')} FAILED: {r['error'][:3000]}")
            if r.get("error_samples") or r.get("bad_samples") or r.get("note"):
                print(f"{v} round {r.get('round')}: " + "; ".join(f"{k} {r[k]}" for k in ("note", "error_samples", "bad_samples") if r.get(k)))
    return summary


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] in ("--fastchat-worker", "--fastchat-api"):
        import serve_peers
        fn = serve_peers.fastchat_worker if sys.argv[1] == "--fastchat-worker" else serve_peers.fastchat_api
        return fn(sys.argv[2:])
    args = parse()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.variant == "ceiling":
        return ceiling_child(args)
    import torch

    import serve_peers
    from instructkit.chat.render import Renderer
    from instructkit.models import load_tokenizer, resolve_model
    torch.set_num_threads(args.threads)  # the in-process HF contenders
    path = resolve_model(args.model)
    tok = load_tokenizer(args.model)
    Path(args.logdir).mkdir(parents=True, exist_ok=True)
    contenders = [c for c in args.contenders.split(",") if c]
    skipped: dict[str, str] = {}
    if "fastchat" in contenders and (why := serve_peers.fastchat_missing()):
        skipped["fastchat"] = why
        contenders.remove("fastchat")
        print(f"SKIPPED fastchat: {why}", flush=True)
    head = common.header("float32", args.threads)
    print(head, flush=True)
    started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    renderer = Renderer(tok)

    def count(text: str) -> int:
        return len(tok(text, add_special_tokens=False)["input_ids"])
    plan = request_plan(args.clients, args.requests, args.lengths, prompts())
    for req in plan:
        req["prompt_tokens"] = count(renderer.prompt_text([{"role": "user", "content": req["prompt"]}]))
    script, cargv = str(Path(__file__).resolve()), ["--threads", str(args.threads), "--model", args.model]
    ceil = common.run_child(script, "ceiling", cargv, 900, print)
    runners = {"instructkit": lambda: serve_peers.run_instructkit(args.model, plan, args, count),
               "fastchat": lambda: serve_peers.run_fastchat(path, plan, args, count),
               "hf": lambda: serve_peers.run_hf(args.model, plan, args, count),
               "hf_batch": lambda: serve_peers.run_hf_batch(args.model, plan, args, count)}

    def one(v: str, rnd: int) -> dict:
        load = os.getloadavg()[0]
        print(f"round {rnd + 1}/{args.rounds}: {v} (load {load:.1f}) ...", flush=True)
        t = time.time()
        try:
            res = runners[v]()
        except Exception as e:  # a contender that breaks is reported next to the others, not hidden
            res = {"error": f"{type(e).__name__}: {e}"}
        res.update(load_avg_1m_before=load, load_avg_1m_after=os.getloadavg()[0], round_s=round(time.time() - t, 1))
        brief = {k: res.get(k) for k in ("tokens_per_s", "errors", "bad_responses", "p50_latency_s", "p99_latency_s",
                                          "p50_ttft_s", "p99_ttft_s", "wall_s")} if "error" not in res else res["error"][:300]
        print(f"  {v}: {brief} ({res['round_s']:.0f} s)", flush=True)
        return res
    runs = common.interleaved(contenders, args.rounds, one)
    end = common.run_child(script, "ceiling", cargv, 900, print)
    gf = max((c["ceiling"]["best_gflops"] for c in (ceil, end) if "ceiling" in c), default=None)
    print("\n" + common.header("float32", args.threads))
    if "ceiling" in ceil:
        print(common.gemm_ceiling_line(ceil["ceiling"]) + f"; after the contenders: best "
              f"{end.get('ceiling', {}).get('best_gflops')} GFLOP/s (the larger is used)")
    summary = report(args, runs, ceil.get("params"), gf)
    for v, why in skipped.items():
        print(f"SKIPPED {v}: {why}")
    common.write_json(args.json, {"bench": "serve", "date": started, "args": vars(args), "hardware": common.hardware(),
                                  "header": head, "ceiling": [ceil, end], "skipped": skipped, "rounds": runs,
                                  "summary": summary})


if __name__ == "__main__":
    main()
