"""bench_train's report: the table per config, MFU against the same-run ceiling, the verdict."""

from __future__ import annotations

import argparse
import time
from typing import Any

import common
from sft_shared import LABELS, LEAK_TOL


def tail_mean(losses: list[float], k: int) -> float | None:
    return sum(losses[-k:]) / len(losses[-k:]) if losses else None


def ratio(r: dict, base: dict | None, key: str) -> str:
    if r.get(key) is None:
        return "-"
    rel = f" ({r[key] / base[key]:.2f}x)" if base and base.get(key) else ""
    return f"{r[key]:.1f}{rel}"


def report(args: argparse.Namespace, res: dict[str, dict], hw: dict, wall: float, method: str = "full") -> dict[str, Any]:
    from rich.console import Console
    from rich.table import Table

    ceil = res.get("ceiling", {})
    runs = [r["ceiling"] for r in (ceil, res.get("ceiling_end", {})) if "ceiling" in r]
    c = max(runs, key=lambda x: x["best_gflops"], default={})
    if len(runs) == 2:
        c = {**c, "best_gflops_runs": [r["best_gflops"] for r in runs]}
    fpt = (common.train_flops_per_token(ceil["params"], ceil["layers"], ceil["d_model"], ceil["mean_attn_ctx"])
           if "params" in ceil else None)
    if fpt and method == "lora":  # frozen base: forward + input gradient only (4N), plus the adapters' own 6 N_lora
        fpt -= 2.0 * ceil["params"] - 6.0 * ceil.get("lora_params", 0)
    k = args.tail_steps
    contenders = [v for v in ("trl_pad", "trl_bfd", "instructkit") if v in res]
    ok = [v for v in contenders if not res[v].get("error")]
    # TRL's best setting that does not leak attention across examples
    clean_trl = [v for v in ok if v.startswith("trl") and res[v]["leak_max_abs_logprob"] <= LEAK_TOL[args.dtype]]
    best_trl = max(clean_trl, key=lambda v: res[v]["tokens_per_s"] or 0, default=None)
    ours = res.get("instructkit", {})
    rows = []
    for v in contenders:
        r = res[v]
        if r.get("error"):
            rows.append({"variant": v, "error": r["error"]})
            continue
        tps = r["tokens_per_s"] or 0
        mfu = tps * fpt / (c["best_gflops"] * 1e9) if fpt and c.get("best_gflops") else None
        step_diff = None
        if v != "instructkit" and ours.get("losses") and len(r["losses"]) == len(ours["losses"]) and \
                r.get("same_rows_as_instructkit"):
            step_diff = max(abs(a / b - 1) for a, b in zip(r["losses"], ours["losses"]))
        # per-step rates (step 1 excluded): on a shared machine the best step shows the code's speed when it
        # briefly had the cores; the median is the typical step
        rates = sorted(t / s for t, s in zip(r.get("step_tokens", [])[1:], r.get("step_s", [])[1:]) if s > 0)
        rows.append({"variant": v, "tokens_per_s": tps, "steps": r["steps"], "real_tokens": r["real_tokens"],
                     "best_step_tps": rates[-1] if rates else None,
                     "median_step_tps": rates[len(rates) // 2] if rates else None,
                     "step_loss_max_rel_diff": step_diff,
                     "peak_rss_mib": r["peak_rss_mib"], "train_loss_tail": tail_mean(r["losses"], k),
                     "heldout_loss": r["heldout_loss"], "leak": r["leak_max_abs_logprob"],
                     "mfu": mfu, "train_s": r["train_s"],
                     "trained_tokens_identical": (r.get("trained_tokens_vs_records") or {}).get("identical")})
    by = {r["variant"]: r for r in rows}
    summary: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "hardware": hw,
                               "args": {k2: v for k2, v in vars(args).items() if k2 not in ("variant",)},
                               "wall_s": round(wall, 1), "flops_per_token": fpt, "ceiling": c, "results": res,
                               "table": rows, "best_clean_trl": best_trl}
    t = Table(title=f"SFT training ({method}), {args.model}, {args.dtype}, {hw['torch_threads']} threads "
                    f"({hw['cpu']}; load {hw['load_avg_1m']})")
    for col in ("contender", "real tok/s", "x best TRL", "median step tok/s", "best step tok/s", "steps", "peak RSS MiB", f"train loss (last {k})",
                "held-out loss", "vs ours", "per-step loss vs ours", "same trained tokens", "leak", "MFU"):
        t.add_column(col, justify="right" if col != "contender" else "left")
    for r in rows:
        if "error" in r:
            t.add_row(LABELS[r["variant"]], f"[red]{r['error'][:80]}")
            continue
        base = by.get(best_trl, {}).get("tokens_per_s")
        ours_l = by.get("instructkit", {}).get("heldout_loss")
        t.add_row(LABELS[r["variant"]], f"{r['tokens_per_s']:.1f}",
                  f"{r['tokens_per_s'] / base:.2f}x" if base else "-", ratio(r, by.get(best_trl), "median_step_tps"),
                  ratio(r, by.get(best_trl), "best_step_tps"), str(r["steps"]), f"{r['peak_rss_mib']:.0f}",
                  f"{r['train_loss_tail']:.4f}", f"{r['heldout_loss']:.4f}",
                  f"{(r['heldout_loss'] / ours_l - 1) * 100:+.2f}%" if ours_l else "-",
                  "-" if r["step_loss_max_rel_diff"] is None else f"max {r['step_loss_max_rel_diff'] * 100:.3f}%",
                  {True: "yes", False: "[red]NO", None: "-"}[r["trained_tokens_identical"]],
                  f"{r['leak']:.1e}" + (" LEAKS" if r["leak"] > LEAK_TOL[args.dtype] else ""),
                  f"{r['mfu'] * 100:.0f}%" if r["mfu"] is not None else "-")
    con = Console(width=230)
    con.print(t)
    if c and fpt:
        con.print(f"matmul ceiling ({c['dtype']}, {c['threads']} threads, M={c['tokens']}): best GEMM "
                  f"{c['best_gflops']} GFLOP/s, [M x 576] @ [576 x 1536] {c['plain_gflops']} GFLOP/s, "
                  f"training GEMM mix (fwd, dgrad, wgrad) {c['train_gemm_gflops']} GFLOP/s; "
                  f"{fpt / 1e9:.3f} GFLOP per real token ("
                  + ("LoRA: 4N for the frozen base (forward + input gradient, no weight gradient) + 6 N_lora + "
                     "attention" if method == "lora" else "6N + attention")
                  + f", N={ceil['params'] / 1e6:.1f}M); {common.header(args.dtype, hw['torch_threads'])}")
        con.print(f"held-out loss before training: {ceil['heldout_loss_before']:.4f} "
                  f"({ceil['heldout_examples']} examples); train slice: {ceil['train_examples']} examples, "
                  f"{ceil['train_tokens']} tokens (mean {ceil['mean_len']}, max {ceil['max_len']}), "
                  f"{ceil['trained_tokens']} trained; data: {ceil['data']}")
        tc = ceil.get("trained_token_check", {})
        con.print(f"assistant-only check on the rendered records: {tc.get('trained_runs')} trained runs, each one "
                  f"assistant turn + end-of-turn, {tc.get('mismatches')} mismatches "
                  f"({'ok' if tc.get('ok') else 'FAILED: ' + str(tc.get('first_mismatches'))}); "
                  f"{ceil.get('multi_turn_examples')} of {ceil['train_examples']} examples multi-turn")
    if best_trl and "instructkit" in by and "error" not in by["instructkit"]:
        o, b = by["instructkit"], by[best_trl]
        speed = o["tokens_per_s"] / b["tokens_per_s"]
        dl = abs(o["heldout_loss"] / b["heldout_loss"] - 1)
        summary["verdict"] = {"speedup_vs_best_clean_trl": round(speed, 3),
                              "median_step_speedup": round(o["median_step_tps"] / b["median_step_tps"], 3),
                              "best_step_speedup": round(o["best_step_tps"] / b["best_step_tps"], 3),
                              "mfu_best_step": (o["best_step_tps"] * fpt / (c["best_gflops"] * 1e9)
                                                if fpt and c.get("best_gflops") else None),
                              "heldout_loss_rel_diff": round(dl, 5),
                              "mfu": o["mfu"], "target_speed_1p5x_trl": speed >= 1.5, "target_loss_1pct": dl <= 0.01,
                              "target_mfu_70pct": (o["mfu"] or 0) >= 0.70,
                              "target_rss_below_trl": o["peak_rss_mib"] < b["peak_rss_mib"]}
        v = summary["verdict"]
        con.print(f"per-step rates: median {v['median_step_speedup']:.2f}x, best step {v['best_step_speedup']:.2f}x; "
                  + (f"MFU at our best step {v['mfu_best_step'] * 100:.0f}%" if v["mfu_best_step"] else "no ceiling run"))
        con.print(f"[{method}] instructkit vs best contamination-free TRL ({best_trl}): {speed:.2f}x tokens/s "
                  f"(target >= 1.5x), held-out loss differs by {dl * 100:.2f}% (target <= 1%), MFU "
                  + (f"{o['mfu'] * 100:.0f}%" if o["mfu"] else "- (no ceiling run)")
                  + f" of the {args.dtype} ceiling (target >= 70%), peak RSS "
                  f"{o['peak_rss_mib']:.0f} vs {b['peak_rss_mib']:.0f} MiB (target: lower)")
    return summary


def brief_of(v: str, r: dict) -> str:
    if r.get("error"):
        return r["error"]
    if v.startswith("ceiling"):
        return f"best GEMM {r['ceiling']['best_gflops']} GFLOP/s"
    return (f"{r.get('tokens_per_s')} real tok/s, {r.get('steps')} steps, held-out loss {r.get('heldout_loss'):.4f}, "
            f"peak RSS {r.get('peak_rss_mib')} MiB")
