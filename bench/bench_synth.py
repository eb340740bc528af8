"""Evol-instruct throughput: distilabel's EvolInstruct vs ``instructkit synth evol``, same local teacher.

Held equal: the teacher (SmolLM2-135M-Instruct through transformers, float32, CPU), the seed instructions
(the first N self-instruct seed tasks), one evolution per instruction per round (distilabel
``num_evolutions`` = our ``rounds``), sampling (temperature 0.7, top_p 1, ``--max-new-tokens``), no
answers (distilabel ``generate_answers=False``; ours ``respond=false``, ``judge_equal=false``, so both do
exactly one generation per evolution; our eliminations that need no teacher call still run).
distilabel's task is driven directly (``load()`` + ``process()``), without its multiprocessing pipeline,
which only adds overhead. Both timings include loading the model (ours loads it inside ``run_evol``), so
the cached re-run's time is mostly that load. Ours runs through the teacher cache, so a second run of the same command is
the "cached re-run of a finished pipeline".

    python bench/bench_synth.py                    # 8 instructions, 1 round, 96 new tokens
    python bench/bench_synth.py --n 16 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED, emit, hardware, run_child  # noqa: E402


def seeds(n: int) -> list[str]:
    with open(SHARED / "self_instruct" / "seed_tasks.jsonl") as f:
        return [json.loads(x)["instruction"] for x in f if x.strip()][:n]


def run_distilabel(a: argparse.Namespace) -> dict:
    from distilabel.models.llms import TransformersLLM
    from distilabel.steps.tasks import EvolInstruct

    from instructkit.models import resolve_model

    path = resolve_model("smollm2-135m-instruct")
    llm = TransformersLLM(model=path, tokenizer=path, device="cpu", torch_dtype="float32",
                          generation_kwargs=dict(max_new_tokens=a.max_new_tokens, temperature=0.7, top_p=1.0, do_sample=True))
    task = EvolInstruct(llm=llm, num_evolutions=a.rounds, store_evolutions=True, generate_answers=False,
                        input_batch_size=a.n)
    t0, c0 = time.perf_counter(), time.process_time()  # model load included, as in ours (run_evol loads its teacher)
    task.load()
    out = next(task.process([{"instruction": s} for s in seeds(a.n)]))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    n_evol = sum(len(r.get("evolved_instructions") or []) for r in out)
    return {"variant": "distilabel", "evolutions": n_evol, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
            "evolutions_per_s": round(n_evol / wall, 4)}


def run_ours(a: argparse.Namespace) -> dict:
    from instructkit.config.synth import EvolConfig, TeacherConfig
    from instructkit.synth.stage import run_evol

    tmp = Path(tempfile.mkdtemp())
    src = tmp / "seeds.txt"
    src.write_text("\n".join(s.replace("\n", " ") for s in seeds(a.n)))
    cfg = EvolConfig(instructions=str(src), rounds=a.rounds, respond=False, judge_equal=False,
                     teacher=TeacherConfig(max_new_tokens=a.max_new_tokens, temperature=0.7, batch_size=a.n, progress=False))
    out = tmp / "out"
    t0, c0 = time.perf_counter(), time.process_time()
    try:
        res = run_evol(cfg, out)
        kept = res["kept"]
    except Exception as e:  # an empty pool (all eliminated) still did the work; count evolutions from the report
        kept = 0
        print(f"note: {e}", file=sys.stderr)
    first, cpu = time.perf_counter() - t0, time.process_time() - c0
    rep = json.loads((out / "report.json").read_text())
    n_evol = sum(r["evolved"] for r in rep["rounds"])
    t0 = time.perf_counter()
    try:
        run_evol(cfg, out)
    except Exception:
        pass
    again = time.perf_counter() - t0
    shutil.rmtree(tmp, ignore_errors=True)
    return {"variant": "instructkit", "evolutions": n_evol, "survived": kept, "wall_s": round(first, 2), "cpu_s": round(cpu, 2),
            "evolutions_per_s": round(n_evol / first, 4), "cached_rerun_s": round(again, 3),
            "cached_speedup": round(first / again, 1), "teacher_sent_first": rep["teacher"].get("sent")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--variant", choices=["distilabel", "instructkit"])
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--max-new-tokens", type=int, default=96)
    ap.add_argument("--timeout", type=float, default=3600)
    a = ap.parse_args()
    if a.variant:
        emit({"distilabel": run_distilabel, "instructkit": run_ours}[a.variant](a))
        return
    argv = ["--n", str(a.n), "--rounds", str(a.rounds), "--max-new-tokens", str(a.max_new_tokens)]
    res = {v: run_child(__file__, v, argv, a.timeout, print) for v in ("distilabel", "instructkit")}
    d, o = res["distilabel"], res["instructkit"]
    summary = {"hardware": hardware(), "args": vars(a), "results": res}
    if "error" not in d and "error" not in o:
        summary["speedup_evolutions_per_s"] = round(o["evolutions_per_s"] / d["evolutions_per_s"], 2)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
