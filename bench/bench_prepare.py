"""SFT data preparation: TRL's ``SFTTrainer._prepare_dataset`` vs ``instructkit`` ``prepare_dataset``.

Same data (a deterministic T0 slice: line j of every template file, written once as a prompt/completion
JSONL), same tokenizer (SmolLM2-135M-Instruct's, its own chat template), one run, each contender in its own
child process. TRL gets the conversational prompt-completion form (``prompt=[user]``,
``completion=[assistant]``), the path its docs recommend for such data: it renders the prompt and the
prompt+completion with ``apply_chat_template`` per example and builds labels from the completion mask
(``completion_only_loss``); it is timed with ``dataset_num_proc`` 1 and 2 and the faster is reported.
instructkit is timed cold (fresh cache folder: real tokenization) with ``num_proc`` 1 and 2, then the
cached rerun. Both outputs' ``input_ids`` are compared example by example; label differences are counted
too (expected: TRL also trains the ``\\n`` the template writes after ``<|im_end|>``; we do not).

    python bench/bench_prepare.py                       # 4000 examples, 3 rounds (~5 min on 2 shared cores)
    python bench/bench_prepare.py --n 1000 --rounds 1   # smoke
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED, emit, hardware, run_child  # noqa: E402

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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=4000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--variant")
    ap.add_argument("--data")
    ap.add_argument("--dump")
    ap.add_argument("--num-proc", type=int, default=1)
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
        run(a.n, work, a.rounds)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(n_wanted: int, work: Path, rounds: int) -> None:
    data = work / "t0_slice.jsonl"
    n = write_slice(n_wanted, data)
    print(f"T0 slice: {n} examples -> {data}", flush=True)
    # rounds interleave the contenders so load changes on the shared machine hit all of them; each
    # contender's best round is reported (TRL with 2 processes is always slowest: one round only)
    best: dict[str, dict] = {}
    for rnd in range(rounds):
        for variant, np_ in (("instructkit", 1), ("instructkit", 2), ("trl", 1), ("trl", 2)):
            if variant == "trl" and np_ == 2 and rnd > 0:
                continue
            dump = work / f"{variant}-{np_}.json"
            r = run_child(__file__, variant, ["--data", str(data), "--dump", str(dump), "--num-proc", str(np_)],
                          timeout=1200, log=print)
            r["dump"], r["round"] = str(dump), rnd
            print(r, flush=True)
            if "error" not in r and r["ex_per_s"] > best.get(r["variant"], {}).get("ex_per_s", 0):
                best[r["variant"]] = r
    ok = list(best.values())
    trl = max((r for r in ok if r["variant"].startswith("trl")), key=lambda r: r["ex_per_s"], default=None)
    ours = max((r for r in ok if r["variant"].startswith("instructkit")), key=lambda r: r["ex_per_s"], default=None)
    hw = hardware()
    print(f"\n# data prepare vs TRL ({date.today()}, {hw['cpu']}, {hw['cores']} cores, load {hw['load_avg_1m']}, "
          f"{n} T0 examples, SmolLM2 tokenizer)")
    print(f"best of {rounds} interleaved rounds per contender (TRL 2 processes: 1 round)")
    print("| contender | examples | seconds | examples/s | vs best TRL | cached rerun s |")
    print("|---|---|---|---|---|---|")
    for r in ok:
        ratio = f"{r['ex_per_s'] / trl['ex_per_s']:.1f}x" if trl else ""
        print(f"| {r['variant']} | {r['examples']} | {r['seconds']} | {r['ex_per_s']} | {ratio} | "
              f"{r.get('cached_rerun_s', '')} |")
    if trl and ours:
        from instructkit.models import load_tokenizer
        nl = load_tokenizer(MODEL).convert_tokens_to_ids("Ċ")  # byte-level "\n"
        cmp = compare(json.loads(Path(trl["dump"]).read_text()), json.loads(Path(ours["dump"]).read_text()), nl)
        print(f"\nspeed-up (best instructkit / best TRL): {ours['ex_per_s'] / trl['ex_per_s']:.1f}x")
        print(f"same input_ids: {cmp['input_ids_mismatches'] == 0} ({cmp['input_ids_mismatches']} mismatching examples, "
              f"first at {cmp['first_ids_mismatch']})")
        print(f"labels differ in {cmp['labels_differ']} examples, {cmp['labels_differ_only_by_trailing_newline']} of them "
              "only by TRL training the '\\n' after <|im_end|> (we train through <|im_end|> only)")


if __name__ == "__main__":
    main()
