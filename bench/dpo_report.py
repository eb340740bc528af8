"""bench_dpo's table: per contender the median and spread over the interleaved rounds, MFU, loss agreement."""

from __future__ import annotations

import argparse
from typing import Any

import common


def report(args: argparse.Namespace, runs: dict[str, list[dict]], ceil: dict, gflops: float | None) -> dict:
    """Print the table; return the per-contender summary. MFU = policy FLOPs of a median step (6 N + attention
    per real chosen/rejected token; reference forward not counted) / median step time / the same-run ceiling."""
    fl = ceil.get("policy_flops_per_step")
    ok = {v: [r for r in rs if "error" not in r] for v, rs in runs.items()}
    ik = (ok.get("instructkit") or [{}])[0]
    summary: dict[str, Any] = {}
    print(f"\nDPO sigmoid beta 0.1, {args.model} {args.dtype}, {args.steps} steps x {args.batch} pairs, lr {args.lr}, "
          f"{args.rounds} interleaved round(s): median [min-max]")
    print("| contender | pairs/s end to end (load, set-up, ref. pass, steps) | instructkit speed-up | median step s "
          "| step speed-up | MFU (median step) | peak RSS MiB | max rel. loss diff vs instructkit |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    ik_pps = common.spread([r["pairs_per_s"] for r in ok.get("instructkit", [])])["median"]
    ik_step = common.spread([r["median_step_s"] for r in ok.get("instructkit", [])])["median"]
    for v, rs in runs.items():
        if not ok[v]:
            print(f"| {v} | error: {rs[0].get('error', '')[:80]} | | | | | | |")
            continue
        pps = common.spread([r["pairs_per_s"] for r in ok[v]])
        step = common.spread([r["median_step_s"] for r in ok[v]])
        rss = common.spread([r["peak_rss_mib"] for r in ok[v]])
        mfu = fl / step["median"] / (gflops * 1e9) if fl and gflops and step["median"] else None
        r0 = ok[v][0]
        diff = None
        if v != "instructkit" and ik.get("losses") and r0.get("losses"):
            n = min(len(ik["losses"]), len(r0["losses"]))
            diff = max(abs(a - b) / abs(b) for a, b in zip(r0["losses"][:n], ik["losses"][:n]))
        rel = f"{ik_pps / pps['median']:.2f}x" if ik_pps and v != "instructkit" else "1.00x"
        srel = f"{step['median'] / ik_step:.2f}x" if ik_step and step["median"] and v != "instructkit" else "1.00x"
        print(f"| {v} | {pps['median']:.3f} [{pps['min']:.3f}-{pps['max']:.3f}] | {rel} | {step['median']:.3f} "
              f"[{step['min']:.3f}-{step['max']:.3f}] | {srel} | {'-' if mfu is None else f'{mfu:.0%}'} | {rss['median']:.0f} "
              f"| {'-' if diff is None else f'{diff:.2%}'} |")
        summary[v] = {"pairs_per_s": pps, "median_step_s": step, "step_speedup": srel, "peak_rss_mib": rss, "mfu": mfu,
                      "max_rel_loss_diff": diff}
    for v, rs in ok.items():  # step 1 runs on the initial weights: equal chosen log-probs = equal tokens, precision
        if rs and rs[0].get("logps_chosen"):
            r = rs[0]
            print(f"{v}: per-step loss {[round(x, 6) for x in r['losses'][:6]]}, chosen log-prob "
                  f"{[round(x, 4) if x is not None else None for x in r['logps_chosen'][:6]]}")
    return summary
