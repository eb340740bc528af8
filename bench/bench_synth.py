"""Evol-instruct throughput: distilabel's EvolInstruct vs ``instructkit synth evol``, same local teacher.

Held equal: the teacher (SmolLM2-135M-Instruct through transformers, float32, CPU, ``--threads`` torch threads),
the seed instructions (the first N self-instruct seed tasks), one evolution per instruction per evolution round
(``--evol-rounds``: distilabel ``num_evolutions`` = our ``rounds``), sampling (temperature 0.7, top_p 1, no
top-k, **no repetition penalty** - distilabel's ``TransformersLLM.generate`` defaults to ``repetition_penalty=1.1``,
set to 1.0 here as ours runs - and ``--max-new-tokens``), no answers (distilabel ``generate_answers=False``; ours ``respond=false``,
``judge_equal=false``, so both do exactly one generation per evolution; our eliminations that need no teacher
call still run). distilabel's task is driven directly (``load()`` + ``process()``), without its multiprocessing
pipeline, which only adds overhead.

Contenders, each in its own child process, ``--rounds`` interleaved rounds (distilabel, instructkit,
distilabel_batched, ...; median round + spread):
* ``distilabel``: as shipped - its ``TransformersLLM`` calls the HF text-generation pipeline without a batch
  size, so the pipeline generates one prompt at a time;
* ``distilabel_batched``: the same task with the pipeline's batch size set to N and left padding (distilabel's
  best setting on CPU: a user can get it by subclassing; it is not a documented option);
* ``instructkit``: ``run_evol`` with the teacher batch N, then the same command again (the answer cache: the
  "cached re-run of a finished pipeline").
Wall times include loading the model (ours loads it inside ``run_evol``). MFU counts useful forward FLOPs of the
generation calls only (2 N per prompt token as each tool renders it + 2 N per generated token) over the time
spent in them, against the float32 GEMM ceiling measured in the same run at the model's linear shapes; sampled
texts differ between tools, so generated tokens/s is reported next to evolutions/s.

    python bench/bench_synth.py                               # 8 instructions, 1 round, 96 new tokens
    python bench/bench_synth.py --n 16 --rounds 3 --json runs/bench/synth.json   # 3 interleaved rounds
    python bench/bench_synth.py --n 16 --evol-rounds 2        # two evolutions per seed
    python bench/bench_synth.py --n 2 --max-new-tokens 8      # smoke
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

MODEL = "smollm2-135m-instruct"
GEMM_SHAPES = [(576, 1536), (1536, 576), (576, 576), (576, 192)]  # SmolLM2-135M linear layers (in, out)
CONTENDERS = ("distilabel", "instructkit", "distilabel_batched")


def seeds(n: int) -> list[str]:
    with open(common.SHARED / "self_instruct" / "seed_tasks.jsonl") as f:
        return [json.loads(x)["instruction"] for x in f if x.strip()][:n]


class CountingPipeline:
    """Wraps distilabel's HF pipeline: counts prompt and generated tokens and the time spent generating (the
    counting itself is kept off that time)."""

    def __init__(self, pipe: Any, batch_size: int | None):
        self.pipe, self.batch_size = pipe, batch_size
        self.prompt_tokens = self.gen_tokens = 0
        self.gen_s = 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.pipe, name)

    def __call__(self, texts: list[str], **kw: Any) -> Any:
        if self.batch_size:
            kw["batch_size"] = self.batch_size
        t = time.perf_counter()
        out = self.pipe(texts, **kw)
        self.gen_s += time.perf_counter() - t
        enc = self.pipe.tokenizer
        self.prompt_tokens += sum(len(enc(x, add_special_tokens=False)["input_ids"]) for x in texts)
        self.gen_tokens += sum(len(enc(g["generated_text"], add_special_tokens=False)["input_ids"])
                               for o in out for g in o)
        return out


def run_distilabel(a: argparse.Namespace, batched: bool) -> dict:
    from distilabel.models.llms import TransformersLLM
    from distilabel.steps.tasks import EvolInstruct

    from instructkit.models import resolve_model

    path = resolve_model(MODEL)
    llm = TransformersLLM(model=path, tokenizer=path, device="cpu", torch_dtype="float32",
                          generation_kwargs=dict(max_new_tokens=a.max_new_tokens, temperature=0.7, top_p=1.0,
                                                 do_sample=True, repetition_penalty=1.0))
    task = EvolInstruct(llm=llm, num_evolutions=a.evol_rounds, store_evolutions=True, generate_answers=False,
                        input_batch_size=a.n)
    t0, c0 = time.perf_counter(), time.process_time()  # model load included, as in ours (run_evol loads its teacher)
    task.load()
    if batched:
        llm._pipeline.tokenizer.padding_side = "left"
    counter = CountingPipeline(llm._pipeline, a.n if batched else None)
    llm._pipeline = counter
    out = next(task.process([{"instruction": s} for s in seeds(a.n)]))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    n_evol = sum(len(r.get("evolved_instructions") or []) for r in out)
    return {"evolutions": n_evol, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
            "evolutions_per_s": round(n_evol / wall, 4), "gen_s": round(counter.gen_s, 2),
            "prompt_tokens": counter.prompt_tokens, "gen_tokens": counter.gen_tokens}


def run_ours(a: argparse.Namespace) -> dict:
    from instructkit.chat.render import Renderer
    from instructkit.config.synth import EvolConfig, TeacherConfig
    from instructkit.models import load_tokenizer
    from instructkit.synth import teacher as teacher_mod
    from instructkit.synth.stage import run_evol

    tok = load_tokenizer(MODEL)
    renderer, counted = Renderer(tok), {"prompt_tokens": 0, "count_s": 0.0}
    original = teacher_mod.Teacher.generate

    def counting(self: Any, requests: Any, desc: str = "teacher") -> Any:  # the prompts as our backend renders them
        t = time.perf_counter()
        for r in requests:
            text = renderer.prompt_text(r.messages) if r.messages else r.prompt
            counted["prompt_tokens"] += len(tok(text, add_special_tokens=False)["input_ids"])
        counted["count_s"] += time.perf_counter() - t
        return original(self, requests, desc)

    tmp = Path(tempfile.mkdtemp())
    src = tmp / "seeds.txt"
    src.write_text("\n".join(s.replace("\n", " ") for s in seeds(a.n)))
    cfg = EvolConfig(instructions=str(src), rounds=a.evol_rounds, respond=False, judge_equal=False,
                     teacher=TeacherConfig(max_new_tokens=a.max_new_tokens, temperature=0.7, batch_size=a.n,
                                           progress=False))
    out = tmp / "out"
    teacher_mod.Teacher.generate = counting  # type: ignore[method-assign]
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        res = run_evol(cfg, out)
        kept = res["kept"]
    except Exception as e:  # an empty pool (all eliminated) still did the work; count evolutions from the report
        kept = 0
        print(f"note: {e}", file=sys.stderr)
    first, cpu = time.perf_counter() - t0 - counted["count_s"], time.process_time() - c0
    teacher_mod.Teacher.generate = original  # type: ignore[method-assign]
    rep = json.loads((out / "report.json").read_text())
    n_evol = sum(r["evolved"] for r in rep["rounds"])
    t0 = time.perf_counter()
    try:
        run_evol(cfg, out)
    except Exception:
        pass
    again = time.perf_counter() - t0
    shutil.rmtree(tmp, ignore_errors=True)
    tu = rep.get("teacher", {})
    return {"evolutions": n_evol, "survived": kept, "wall_s": round(first, 2), "cpu_s": round(cpu, 2),
            "evolutions_per_s": round(n_evol / first, 4), "cached_rerun_s": round(again, 3),
            "cached_speedup": round(first / again, 1), "teacher_sent_first": tu.get("sent"),
            "gen_s": round(tu.get("seconds") or 0.0, 2), "prompt_tokens": counted["prompt_tokens"],
            "gen_tokens": tu.get("completion_tokens")}


def run_ceiling(a: argparse.Namespace) -> dict:
    from instructkit.models import load_model
    n = sum(p.numel() for p in load_model(MODEL, dtype="float32").parameters())  # tied head counted once
    return {"params": n, "ceiling": common.matmul_ceiling("float32", GEMM_SHAPES, tokens=2048, min_s=0.3)}


CHILDREN = {"distilabel": lambda a: run_distilabel(a, False), "distilabel_batched": lambda a: run_distilabel(a, True),
            "instructkit": run_ours, "ceiling": run_ceiling}


def report(a: argparse.Namespace, runs: dict[str, list[dict]], params: int | None, gf: float | None) -> dict:
    summary: dict[str, Any] = {}
    ik = common.median_round(runs.get("instructkit", []), "evolutions_per_s")
    print(f"\nevol-instruct: {a.n} seeds x {a.evol_rounds} evolution round(s), {a.max_new_tokens} new tokens, float32, "
          f"{a.threads} thread(s); {a.rounds} interleaved round(s): median round [min-max]")
    print("| contender | evolutions | wall s (incl. model load) | evolutions/s | instructkit speed-up | generated "
          "tokens | generated tok/s (in generate) | MFU (generate) | cached re-run s |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for v, rs in runs.items():
        med = common.median_round(rs, "evolutions_per_s")
        if med is None:
            err = next((r.get("error", "") for r in rs if "error" in r), "")
            print(f"| {v} | failed: {err.strip().splitlines()[-1][:100] if err.strip() else '?'} | | | | | | | |")
            summary[v] = {"failed": [r.get("error") for r in rs]}
            continue
        eps = common.spread([r.get("evolutions_per_s") for r in rs if "error" not in r])
        gen_tps = med["gen_tokens"] / med["gen_s"] if med.get("gen_s") and med.get("gen_tokens") is not None else None
        mfu = (2.0 * params * (med["prompt_tokens"] + med["gen_tokens"]) / med["gen_s"] / (gf * 1e9)
               if params and gf and gen_tps is not None else None)
        ratio = ik["evolutions_per_s"] / med["evolutions_per_s"] if ik and med["evolutions_per_s"] else None
        print(f"| {v} | {med['evolutions']} | {med['wall_s']} | {common.fmt_spread(eps, 3)} | "
              f"{'-' if ratio is None else f'{ratio:.2f}x'} | {med.get('gen_tokens')} | "
              f"{'-' if gen_tps is None else f'{gen_tps:.1f}'} | {'-' if mfu is None else f'{mfu:.1%}'} | "
              f"{med.get('cached_rerun_s', '')} |")
        summary[v] = {"median_round": med, "evolutions_per_s": eps, "gen_tokens_per_s": gen_tps, "mfu": mfu,
                      "instructkit_speedup": ratio}
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", choices=[*CONTENDERS, "ceiling"], help=argparse.SUPPRESS)
    ap.add_argument("--contenders", default=",".join(CONTENDERS))
    ap.add_argument("--n", type=int, default=8, help="seed instructions")
    ap.add_argument("--evol-rounds", type=int, default=1, help="evolution rounds (distilabel num_evolutions)")
    ap.add_argument("--rounds", type=int, default=1, help="interleaved bench rounds: median round + spread")
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1") or 1),
                    help="torch threads per contender (default: $OMP_NUM_THREADS, else 1)")
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--json", default=None, help="write the whole run here")
    a = ap.parse_args()
    if a.variant:
        import torch
        torch.set_num_threads(a.threads)
        try:
            res = CHILDREN[a.variant](a)
        except Exception as e:  # reported next to the other contenders
            import traceback
            traceback.print_exc()
            res = {"error": f"{type(e).__name__}: {e}"}
        common.emit({"variant": a.variant, "peak_rss_mib": common.peak_rss_mib(), **res})
        return
    head = common.header("float32", a.threads)
    print(head, flush=True)
    started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    argv = ["--n", str(a.n), "--evol-rounds", str(a.evol_rounds), "--max-new-tokens", str(a.max_new_tokens),
            "--threads", str(a.threads)]
    ceil = common.run_child(__file__, "ceiling", argv, a.timeout, print)

    def one(v: str, rnd: int) -> dict:
        load = os.getloadavg()[0]
        r = common.run_child(__file__, v, argv, a.timeout, print)
        r["load_avg_1m_before"] = load
        print(f"round {rnd + 1}/{a.rounds}: {v} " + json.dumps(r)[:400], flush=True)
        return r
    runs = common.interleaved([c for c in a.contenders.split(",") if c], a.rounds, one)
    end = common.run_child(__file__, "ceiling", argv, a.timeout, print)
    gf = max((c["ceiling"]["best_gflops"] for c in (ceil, end) if "ceiling" in c), default=None)
    print("\n" + common.header("float32", a.threads))
    if "ceiling" in ceil:
        print(common.gemm_ceiling_line(ceil["ceiling"]) + f"; after the contenders: best "
              f"{end.get('ceiling', {}).get('best_gflops')} GFLOP/s (the larger is used)")
    summary = report(a, runs, ceil.get("params"), gf)
    common.write_json(a.json, {"bench": "synth", "date": started, "args": vars(a), "hardware": common.hardware(),
                               "header": head, "ceiling": [ceil, end], "rounds": runs, "summary": summary})


if __name__ == "__main__":
    main()
