"""SFT data preparation: TRL's ``SFTTrainer._prepare_dataset`` vs ``instructkit`` ``prepare_dataset``.

Same data (a deterministic T0 slice: line j of every template file, written once as a prompt/completion
JSONL), same tokenizer (SmolLM2-135M-Instruct's, its own chat template), one run, each contender in its own
child process. TRL gets the conversational prompt-completion form (``prompt=[user]``,
``completion=[assistant]``), the path its docs recommend for such data: it renders the prompt and the
prompt+completion with ``apply_chat_template`` per example and builds labels from the completion mask
(``completion_only_loss``); it is timed with ``dataset_num_proc`` 1 and 2 and the faster is reported.
instructkit is timed cold (fresh cache folder: real tokenization) with ``num_proc`` 1 and 2, then the
cached rerun. Every contender runs in every round; rounds interleave them (ours, TRL, ours, TRL); each
contender's median round is reported with the spread, and each tool's faster ``num_proc`` is its best setting.
No GEMM ceiling applies (tokenizer and Arrow work): the report says so instead of an MFU. Both outputs'
``input_ids`` are compared example by example; label differences are counted too (expected: TRL also
trains the ``\\n`` the template writes after ``<|im_end|>``; we do not).

    python bench/bench_prepare.py --json runs/bench/prepare.json   # 4000 examples, 3 rounds
    python bench/bench_prepare.py --n 300 --rounds 1               # smoke
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (NO_CEILING, SHARED, emit, fmt_spread, hardware, header, interleaved, median_round,  # noqa: E402
                    run_child, spread, write_json)

MODEL = "smollm2-135m-instruct"


def write_slice(n: int, out: Path) -> int:
    files = sorted((SHARED / "t0_train").glob("*.jsonl"))
    if not files:
        raise SystemExit(f"no T0 data under {SHARED / 't0_train'} (set INSTRUCTKIT_SHARED)")
    handles = [f.open() for f in files]
    written = 0
    with out.open("w") as w:
        while written < n:
            got = False
            for h in handles:
                line = h.readline()
                if line.strip() and written < n:
                    w.write(line if line.endswith("\n") else line + "\n")
                    written += 1
                    got = True
            if not got:
                break
    for h in handles:
        h.close()
    return written


def child_trl(data: Path, dump: Path, num_proc: int) -> dict:
    import warnings

    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    from instructkit.data import read_conversations
    from instructkit.models import load_tokenizer, make_tiny_model

    warnings.filterwarnings("ignore")
    tok = load_tokenizer(MODEL)
    # the same conversations our reader produces (T0 has a few empty completions: skipped for both) (its <|endoftext|> strip included), in TRL's own format
    rows = [{"prompt": [c.messages[0].to_dict()], "completion": [c.messages[1].to_dict()]}
            for c in read_conversations(data, on_error="skip")]
    ds = Dataset.from_list(rows)
    # the model only has to exist for the constructor; it plays no part in preparation
    model = make_tiny_model(tok)
    with tempfile.TemporaryDirectory() as tmp:
        args = SFTConfig(output_dir=tmp, max_length=2048, dataset_num_proc=num_proc if num_proc > 1 else None,
                         report_to=[], completion_only_loss=True, use_cpu=True, bf16=False)
        trainer = SFTTrainer(model=model, args=args, train_dataset=ds.select(range(8)), processing_class=tok)
        t0 = time.perf_counter()
        out = trainer._prepare_dataset(ds, tok, args, packing=False, formatting_func=None, dataset_name="train")
        dt = time.perf_counter() - t0
    dump.write_text(json.dumps(out.select_columns(["input_ids", "labels"]).to_dict()))
    return {"variant": f"trl-np{num_proc}", "examples": len(out), "seconds": round(dt, 2),
            "ex_per_s": round(len(out) / dt, 1)}


def child_ours(data: Path, dump: Path, num_proc: int) -> dict:
    from instructkit.data.prepare import prepare_dataset
    from instructkit.models import load_tokenizer

    tok = load_tokenizer(MODEL)
    with tempfile.TemporaryDirectory() as cache:
        t0 = time.perf_counter()
        ds, rep = prepare_dataset(data, tok, max_length=2048, cache_dir=cache, num_proc=num_proc,
                                  on_error="skip")
        dt = time.perf_counter() - t0
        assert not rep.cached
        t1 = time.perf_counter()
        ds2, rep2 = prepare_dataset(data, tok, max_length=2048, cache_dir=cache, num_proc=num_proc,
                                  on_error="skip")
        dt_cached = time.perf_counter() - t1
        assert rep2.cached and len(ds2) == len(ds)
        dump.write_text(json.dumps(ds.select_columns(["input_ids", "labels"]).to_dict()))
    return {"variant": f"instructkit-np{num_proc}", "examples": len(ds), "seconds": round(dt, 2),
            "ex_per_s": round(len(ds) / dt, 1), "cached_rerun_s": round(dt_cached, 3),
            "skipped": rep.skipped.total, "truncated": rep.truncated}


def compare(trl: dict, ours: dict, newline_id: int) -> dict:
    pairs = list(zip(trl["input_ids"], ours["input_ids"]))
    ids_mismatch = sum(x != y for x, y in pairs) + abs(len(trl["input_ids"]) - len(ours["input_ids"]))
    first = next((i for i, (x, y) in enumerate(pairs) if x != y), None)
    lab_diff = [(t, o) for t, o in zip(trl["labels"], ours["labels"]) if t != o]
    # the expected difference: TRL's completion mask also covers the "\n" the template writes after <|im_end|>
    only_newline = sum(len(t) == len(o) and [k for k in range(len(t)) if t[k] != o[k]] == [len(t) - 1]
                       and t[-1] == newline_id and o[-1] == -100 for t, o in lab_diff)
    return {"input_ids_mismatches": ids_mismatch, "first_ids_mismatch": first, "labels_differ": len(lab_diff),
            "labels_differ_only_by_trailing_newline": only_newline}


CONTENDERS = (("instructkit", 1), ("trl", 1), ("instructkit", 2), ("trl", 2))  # ours, peer, ours, peer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=4000, help="T0 records (line j of every template file)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds: median round + spread")
    ap.add_argument("--json", default=None, help="write the whole run here")
    ap.add_argument("--timeout", type=float, default=1200)
    ap.add_argument("--variant", help=argparse.SUPPRESS)
    ap.add_argument("--data", help=argparse.SUPPRESS)
    ap.add_argument("--dump", help=argparse.SUPPRESS)
    ap.add_argument("--num-proc", type=int, default=1, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.variant:
        # common.run_child pins TOKENIZERS_PARALLELISM=false (right for training benchmarks); preparation is
        # measured with the libraries' defaults, as a user runs it: the same for both contenders
        os.environ.pop("TOKENIZERS_PARALLELISM", None)
        fn = {"trl": child_trl, "instructkit": child_ours}[a.variant]
        emit(fn(Path(a.data), Path(a.dump), a.num_proc))
        return
    work = Path(tempfile.mkdtemp(prefix="bench_prepare"))
    try:
        run(a, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(a: argparse.Namespace, work: Path) -> None:
    data = work / "t0_slice.jsonl"
    n = write_slice(a.n, data)
    head = header("none (tokenization and Arrow writes)", None)
    print(head, flush=True)
    print(f"T0 slice: {n} examples -> {data}", flush=True)
    started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")

    def one(name: str, rnd: int) -> dict:
        variant, np_ = name.rsplit("-np", 1)
        dump = work / f"{name}.json"
        load = os.getloadavg()[0]
        r = run_child(__file__, variant, ["--data", str(data), "--dump", str(dump), "--num-proc", np_],
                      timeout=a.timeout, log=print)
        r.update(variant=name, dump=str(dump), load_avg_1m_before=load)
        print(f"round {rnd + 1}/{a.rounds}: {r}", flush=True)
        return r
    runs = interleaved([f"{v}-np{p}" for v, p in CONTENDERS], a.rounds, one)
    med = {v: median_round(rs, "ex_per_s") for v, rs in runs.items()}
    sp = {v: spread([r.get("ex_per_s") for r in rs if "error" not in r]) for v, rs in runs.items()}
    trl = max((m for v, m in med.items() if v.startswith("trl") and m), key=lambda r: r["ex_per_s"], default=None)
    ours = max((m for v, m in med.items() if v.startswith("instructkit") and m), key=lambda r: r["ex_per_s"],
               default=None)
    print("\n" + header("none (tokenization and Arrow writes)", None))
    print(NO_CEILING.format(what="tokenization, label masks and Arrow writes"))
    print(f"\n# data prepare vs TRL ({n} T0 examples, SmolLM2 tokenizer, max_length 2048), {a.rounds} interleaved "
          "round(s): median round [min-max] per contender; each tool's faster num_proc is its best setting")
    print("| contender | examples | seconds (median round) | examples/s | vs best TRL | cached rerun s |")
    print("|---|---|---|---|---|---|")
    for v, m in med.items():
        if m is None:
            err = next((r.get("error", "") for r in runs[v] if "error" in r), "")
            print(f"| {v} | failed: {err[:100]} | | | | |")
            continue
        ratio = f"{m['ex_per_s'] / trl['ex_per_s']:.2f}x" if trl else ""
        print(f"| {v} | {m['examples']} | {m['seconds']} | {fmt_spread(sp[v])} | {ratio} | {m.get('cached_rerun_s', '')} |")
    summary: dict = {"median_round": med, "ex_per_s": sp}
    if trl and ours:
        from instructkit.models import load_tokenizer
        nl = load_tokenizer(MODEL).convert_tokens_to_ids("Ċ")  # byte-level "\n"
        cmp = compare(json.loads(Path(trl["dump"]).read_text()), json.loads(Path(ours["dump"]).read_text()), nl)
        summary.update(speedup=ours["ex_per_s"] / trl["ex_per_s"], best_ours=ours["variant"], best_trl=trl["variant"],
                       parity=cmp)
        print(f"\nspeed-up ({ours['variant']} / {trl['variant']}, median rounds): {summary['speedup']:.2f}x")
        print(f"same input_ids: {cmp['input_ids_mismatches'] == 0} ({cmp['input_ids_mismatches']} mismatching examples, "
              f"first at {cmp['first_ids_mismatch']})")
        print(f"labels differ in {cmp['labels_differ']} examples, {cmp['labels_differ_only_by_trailing_newline']} of them "
              "only by TRL training the '\\n' after <|im_end|> (we train through <|im_end|> only)")
    write_json(a.json, {"bench": "prepare", "date": started, "args": vars(a), "hardware": hardware(), "header": head,
                        "examples": n, "rounds": runs, "summary": summary})


if __name__ == "__main__":
    main()
