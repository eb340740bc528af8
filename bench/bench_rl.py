"""Online RL benchmark: instructkit GRPO (``train.objective: grpo``) vs TRL 1.16 ``GRPOTrainer`` (issue #21).

Both train SmolLM2-135M-Instruct (the embedded model) with GRPO on recipes/rlvr_times.yaml's task: the same
prompts in the same order (the recipe's train prompts in instructkit's epoch order; TRL gets them as its
dataset with ``shuffle_dataset=False``, and the parent checks every step's prompt tokens are equal), the same
reward (``rl_shared.answer_reward``, one plain Python function given to both: last number == gold), the same
G, max completion length, temperature (top_p 1, no top-k), beta (k3 KL to the base = the LoRA adapter disabled,
on both), clip eps, the same loss normalisation (instructkit ``loss_agg`` -> TRL ``loss_type``: token -> dapo,
sequence -> grpo, dr_grpo -> dr_grpo; ``rl_shared.LOSS_TYPE``), group-std advantage scaling with eps 1e-4, one
update per rollout (TRL ``num_iterations=1``, generation batch = the step's completions: on policy, ratio 1),
the same optimizer (fused torch AdamW: TRL ``optim="adamw_torch_fused"``; lr, betas, eps, no weight decay,
constant schedule, clip 1.0), the same LoRA (r, alpha from the recipe; dropout 0; all linear layers;
``torch.manual_seed(seed)`` before the adapters on both - the LoRA A checksum is printed), the same dtype
(``--dtype auto`` = what ``dtype: auto`` picks; the model is loaded in it on both sides, TRL with
``bf16=False, fp16=False``: no autocast), sdpa attention, no gradient checkpointing, no dropout.

What differs, by design (it is what is measured): rollouts. instructkit samples through its decode engine
(continuous batching, the G completions of a prompt share one prefill, finished rows leave the batch), TRL
through HF ``generate`` on the prompts repeated G times (``--variants ...,trl_cb``: TRL's
``use_transformers_continuous_batching``). ``use_vllm`` is not available on CPU (vLLM's CPU build is not a
pip wheel here), so HF generate is TRL's CPU path. The samples themselves differ (different RNGs): the
completion lengths, hence the work, differ a little; each side's useful FLOPs come from its own completions.

One clock (``common.StepClock``, a global optimizer-step hook), started when the model is loaded, before the
tool's trainer is built. Reported per contender, median [min-max] over ``--rounds`` interleaved rounds:
rollout tokens/s (completion tokens up to and including EOS / seconds inside the rollout call), optimizer
steps/min over steps 2..N, end-to-end s/step (setup + all steps / steps), the rollout share of that time,
MFU (useful FLOPs of steps 2..N / their time / the best GEMM rate measured in the same run; FLOP model in
``rl_shared.step_flops``: prompt tokens once per prompt, completion tokens once, rollout forward + reference
forward + LoRA training forward/backward, attention over the causal context), peak RSS of the child process.

Loss parity (``--parity-steps``): both sides get the same fixed completions (their rollout call replaced by
one returning fixed token ids: right and wrong answers of different lengths, one unfinished), hence the same
rewards and advantages; their per-step losses (TRL's unrounded ``compute_loss`` output) are compared; <= 1%
passes. It runs at the recipe's temperature (both sides score log-probs of logits / T, the distribution
sampled from; before 2026-12-06 instructkit used the raw logits and parity held only at T = 1)
and lr 1e-5 (``--parity-lr``; at the recipe's 5e-4 one Adam step on these unlikely texts gives KL ~5000 and
the runs diverge from step 3).

    python bench/bench_rl.py --quick                         # smoke (2 steps, G 4, 8 tokens)
    python bench/bench_rl.py --rounds 3 --json bench-rl.json # the quoted run, on a quiet machine
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import rl_shared  # noqa: E402

VARIANTS = ("instructkit", "trl")
PARITY_TOL = 0.01
QUICK = {"steps": 2, "g": 4, "max_new_tokens": 8, "prompts_per_step": 1, "parity_steps": 2}


def child_main(args: argparse.Namespace) -> None:
    import torch

    import rl_children

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        res = rl_children.CHILDREN[args.variant](args)
    except Exception as e:  # reported next to the other contenders
        import traceback
        traceback.print_exc()
        res = {"error": f"{type(e).__name__}: {e}"}
    import resource
    ru = resource.getrusage(resource.RUSAGE_SELF)
    res.update(variant=args.variant, peak_rss_mib=common.peak_rss_mib(), cpu_s=round(ru.ru_utime + ru.ru_stime, 1))
    common.emit(res)


def child_argv(args: argparse.Namespace, steps: int) -> list[str]:
    out = ["--model", args.model, "--dtype", args.dtype, "--recipe", args.recipe, "--steps", str(steps),
           "--seed", str(args.seed), "--threads", str(args.threads)]
    for k in ("g", "max_new_tokens", "prompts_per_step", "beta", "loss_agg", "temperature", "lr"):
        if getattr(args, k) is not None:
            out += [f"--{k.replace('_', '-')}", str(getattr(args, k))]
    return out + (["--quick"] if args.quick else [])


def fmt(sp: dict[str, Any], nd: int = 2) -> str:
    if sp["median"] is None:
        return "-"
    return f"{sp['median']:.{nd}f} [{sp['min']:.{nd}f}-{sp['max']:.{nd}f}]"


def report(args: argparse.Namespace, runs: dict[str, list[dict]], gflops: float | None) -> dict[str, Any]:
    ok = {v: [r for r in rs if "error" not in r] for v, rs in runs.items()}
    cols = {"rollout_tok_s": ("rollout tok/s", 1), "steps_per_min": ("opt. steps/min (2..N)", 2),
            "s_per_step": ("end-to-end s/step", 2), "rollout_share": ("rollout share", 2),
            "mfu": ("MFU", 3), "mean_completion_len": ("mean completion tokens", 1), "peak_rss_mib": ("peak RSS MiB", 0)}
    for rs in ok.values():
        for r in rs:
            r["mfu"] = r["steady_flops_per_s"] / (gflops * 1e9) if gflops and r.get("steady_flops_per_s") else None
    summary: dict[str, Any] = {}
    print("\n| contender | " + " | ".join(c[0] for c in cols.values()) + " |")
    print("|---|" + "---:|" * len(cols))
    for v, rs in runs.items():
        if not ok[v]:
            print(f"| {v} | error: {rs[0].get('error', '')[:100]} |")
            continue
        summary[v] = {k: common.spread([r.get(k) for r in ok[v]]) for k in cols}
        print(f"| {v} | " + " | ".join(fmt(summary[v][k], nd) for k, (_, nd) in cols.items()) + " |")
    ik = summary.get("instructkit")
    for v in summary:
        if v == "instructkit" or not ik:
            continue
        s = summary[v]
        ratio = {k: (ik[k]["median"] / s[k]["median"]) if ik[k]["median"] and s[k]["median"] else None
                 for k in ("rollout_tok_s", "steps_per_min", "peak_rss_mib")}
        ratio["end_to_end"] = (s["s_per_step"]["median"] / ik["s_per_step"]["median"]
                               if ik["s_per_step"]["median"] else None)
        summary[v]["instructkit_vs"] = ratio
        print(f"instructkit vs {v}: end to end x{ratio['end_to_end'] or 0:.2f} (s/step), rollout tokens/s "
              f"x{ratio['rollout_tok_s'] or 0:.2f}, steps/min x{ratio['steps_per_min'] or 0:.2f}; peak RSS "
              f"instructkit/{v} {ratio['peak_rss_mib'] or 0:.2f}")
    checks(ok)
    return summary


def checks(ok: dict[str, list[dict]]) -> None:
    """Same prompts per step, same LoRA init, dtypes, per-step losses/rewards (round 1)."""
    ik = (ok.get("instructkit") or ok.get("parity_instructkit") or [None])[0]
    for v, rs in ok.items():
        if not rs:
            continue
        r = rs[0]
        m = r.get("model") or {}
        print(f"{v}: params {m.get('param_dtypes')} ({r.get('precision')}), LoRA A |sum| {m.get('lora_A_abs_sum')}, "
              f"trainable {m.get('trainable_params')}; per-step loss {[round(x, 5) for x in r['losses'][:8]]}, "
              f"reward {[None if x is None else round(x, 3) for x in r['rewards'][:8]]}")
        if ik is not None and r is not ik:
            same = r["prompts_per_step"] == ik["prompts_per_step"][:len(r["prompts_per_step"])]
            print(f"  same prompt tokens at every step as {ik['variant']}: {'yes' if same else 'NO'}")


def parity(args: argparse.Namespace, res: dict[str, dict]) -> dict[str, Any]:
    """The loss-parity table from the two parity children's results."""
    a, b = res["parity_instructkit"], res["parity_trl"]
    if "error" in a or "error" in b:
        print(f"\nloss parity: error ({a.get('error') or b.get('error')})")
        return {"error": a.get("error") or b.get("error"), "runs": res}
    diffs = [rl_shared.rel_diff(x, y) for x, y in zip(a["losses"], b["losses"])]
    gn = [rl_shared.rel_diff(x, y) for x, y in zip(a["grad_norm"], b["grad_norm"]) if x is not None and y is not None]
    print(f"\nloss parity (same fixed completions and rewards, {len(diffs)} steps, {args.dtype}); with one update per "
          "rollout the loss is -mean(A) + beta KL, so the KL and the gradient norm (pre-clip) are compared too:")
    print("| step | instructkit loss | TRL loss | rel. diff | reward ik / TRL | KL ik / TRL | grad norm ik / TRL |")
    print("|---:|---:|---:|---:|---|---|---|")

    def at(r: dict, k: str, i: int) -> str:
        v = (r.get(k) or [])[i] if i < len(r.get(k) or []) else None
        return "-" if v is None else f"{v:.6g}"
    for i, (x, y, d) in enumerate(zip(a["losses"], b["losses"], diffs)):
        print(f"| {i + 1} | {x:.6f} | {y:.6f} | {d:.2e} | {at(a, 'rewards', i)} / {at(b, 'rewards', i)} | "
              f"{at(a, 'kl', i)} / {at(b, 'kl', i)} | {at(a, 'grad_norm', i)} / {at(b, 'grad_norm', i)} |")
    worst = max(diffs) if diffs else None
    same_prompts = a["prompts_per_step"] == b["prompts_per_step"]
    ok = worst is not None and worst <= PARITY_TOL and same_prompts and len(a["losses"]) == len(b["losses"])
    print(f"max rel. loss diff {worst:.2e} (tolerance {PARITY_TOL:.0%}), grad norm {max(gn, default=float('nan')):.2e}; "
          f"same prompts: {same_prompts}; LoRA A |sum| "
          f"{a['model']['lora_A_abs_sum']:.6f} / {b['model']['lora_A_abs_sum']:.6f} -> {'PASS' if ok else 'FAIL'}")
    return {"max_rel_diff": worst, "rel_diffs": diffs, "grad_norm_rel_diffs": gn, "pass": ok,
            "same_prompts": same_prompts, "runs": res}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variant", choices=("instructkit", "trl", "trl_cb", "parity_instructkit", "parity_trl",
                                         "ceiling"))
    p.add_argument("--variants", default=",".join(VARIANTS), help="instructkit,trl[,trl_cb]")
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--recipe", default="recipes/rlvr_times.yaml", help="the settings both sides use")
    p.add_argument("--dtype", default="auto", help="auto = what instructkit's dtype: auto picks | float32 | bfloat16")
    p.add_argument("--steps", type=int, default=6, help="optimizer steps per timed run (the recipe runs 8)")
    p.add_argument("--g", type=int, default=None, help="completions per prompt (default: the recipe's)")
    p.add_argument("--max-new-tokens", type=int, default=None, help="max completion length (default: the recipe's)")
    p.add_argument("--prompts-per-step", type=int, default=None, help="prompts per step (default: the recipe's)")
    p.add_argument("--beta", type=float, default=None)
    p.add_argument("--loss-agg", choices=tuple(rl_shared.LOSS_TYPE), default=None)
    p.add_argument("--parity-steps", type=int, default=3, help="steps of the loss-parity check (0 = skip)")
    p.add_argument("--parity-temperature", type=float, default=None,
                   help="temperature of the parity runs (default: the recipe's; both tools score log-probs of "
                        "logits / T)")
    p.add_argument("--parity-lr", type=float, default=1e-5,
                   help="lr of the parity runs: small, so the policy stays near the fixed completions' start and a "
                        "step's rounding is not amplified (the recipe's 5e-4 moves it to KL ~5000 in one step)")
    p.add_argument("--temperature", type=float, default=None, help=argparse.SUPPRESS)  # children: parity's T
    p.add_argument("--lr", type=float, default=None, help=argparse.SUPPRESS)  # children: parity's lr
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads per child (0 = torch's default)")
    p.add_argument("--rounds", type=int, default=1, help="interleaved rounds (ours, peer, ...): median and spread; 0 = only the parity check")
    p.add_argument("--quick", action="store_true", help="smoke: " + ", ".join(f"{k} {v}" for k, v in QUICK.items()))
    p.add_argument("--timeout", type=float, default=1800)
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args()
    if args.variant:
        return child_main(args)
    if args.quick:
        for k, v in QUICK.items():
            if k in ("steps", "parity_steps") or getattr(args, k) is None:
                setattr(args, k, v)
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.dtype == "auto":  # resolved once here, so every child loads the same dtype
        from instructkit.models.dtype import resolve_dtype
        args.dtype, why = resolve_dtype("auto", "cpu")
        print(f"--dtype auto -> {args.dtype} ({why})", flush=True)
    hw = common.hardware()
    print(common.header(args.dtype, args.threads or None), flush=True)
    argv = child_argv(args, args.steps)
    timed = args.rounds > 0  # --rounds 0: the parity check only
    ceil = common.run_child(__file__, "ceiling", argv, args.timeout, print) if timed else {}
    runs = common.interleaved(args.variants.split(","), args.rounds,
                              lambda v, _r: common.run_child(__file__, v, argv, args.timeout, print)) if timed else {}
    end = common.run_child(__file__, "ceiling", argv, args.timeout, print) if timed else {}  # load lowers it: max
    gf = max((c["ceiling"]["best_gflops"] for c in (ceil, end) if "ceiling" in c), default=None)
    pargs = argparse.Namespace(**{**vars(args), "temperature": args.parity_temperature if args.parity_temperature is not None
                                             else args.temperature, "lr": args.parity_lr})
    par_runs = {v: common.run_child(__file__, v, child_argv(pargs, args.parity_steps), args.timeout, print)
                for v in ("parity_instructkit", "parity_trl")} if args.parity_steps else None
    print("\n" + common.header(args.dtype, args.threads or None))
    if "ceiling" in ceil:
        print(common.gemm_ceiling_line(ceil["ceiling"]) + f"; after the contenders: best "
              f"{end.get('ceiling', {}).get('best_gflops')} GFLOP/s (the larger is used)")
    st = next((r["settings"] for r in runs.get("instructkit", []) if "settings" in r), None)
    if st:
        print(f"GRPO on {args.recipe}: {args.steps} steps x {st['prompts_per_step']} prompts x G={st['num_generations']}"
              f", <= {st['max_new_tokens']} new tokens, T={st['temperature']}, beta {st['beta']}, loss_agg "
              f"{st['loss_agg']} (TRL loss_type={rl_shared.LOSS_TYPE[st['loss_agg']]}), lr {st['lr']}, LoRA, "
              f"{args.rounds} interleaved round(s): median [min-max]")
    summary = report(args, runs, gf) if timed else {}
    par = parity(args, par_runs) if par_runs else None
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "hardware": hw, "ceiling": [ceil, end],
                                               "results": runs, "parity": par, "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
