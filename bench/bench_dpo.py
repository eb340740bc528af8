"""DPO training: TRL ``DPOTrainer`` vs instructkit ``train.objective: dpo`` on the same model, pairs, loss
(sigmoid, beta 0.1), precision, batch and order.

Contenders (each in its own child process, so peak RSS is per contender):

* ``trl``: DPOTrainer as users run it - the reference model is a second copy in memory and runs a
  forward on every batch;
* ``trl_precompute``: DPOTrainer with ``precompute_ref_log_probs=True`` (reference pass once, up front);
* ``instructkit``: reference log-probs computed once and cached on disk (the cache is cleared first, so
  its cost is included), chosen + rejected packed padding-free in one row.

Same batches: the pairs are given to TRL in instructkit's epoch-0 order (seeded permutation) and TRL's
sampler is made sequential, so step k sees the same pairs in both; loss curves are compared step by step.

Same tokens: TRL gets instructkit's rendered token ids (prompt, chosen, rejected), not its own tokenisation.
TRL slices a conversational completion off the full chat render, which for ChatML ends ``<|im_end|>\n``: it
would train the ``\n`` after the end-of-turn token as well, one extra token per side that the model never
generates (it stops at ``<|im_end|>``) and that instructkit does not train. That token alone put the curves
1.9% apart; ``--trl-own-tokens`` restores TRL's tokenisation to show it.

Same precision: TRL's ``DPOConfig`` defaults to ``bf16=True`` (it says so in its docs), which on CPU runs the
fp32 model under bf16 autocast - that, not tokens, is why its chosen log-prob differed by ~0.23 nats before any
update (BENCHMARKS.md, issue #24 13b). The bench sets ``bf16=False``; ``--trl-autocast`` restores TRL's default.
Same optimizer: fused AdamW on both sides (TRL ``optim="adamw_torch_fused"``). One clock: a global torch
optimizer step hook (``common.StepClock``) times both sides, not each tool's log; it starts for both at the same
point - the model on disk and the pairs in memory - so loading, tokenizing, trainer set-up and the reference pass
are inside it on both sides (before 2026-12-06 10:30 UTC TRL's clock started after its model load and trainer
construction, ours before ``train()``, which does all of that itself).

Reported per contender (median and spread over ``--rounds`` interleaved rounds): pairs/s end to end (that clock),
median step time after the first (steady state; the reference pass of the precomputing contenders is in step 1)
and its ratio, MFU of the median step against the GEMM ceiling measured in the same
run (policy FLOPs only: 6 N + attention per real token of chosen and rejected; the reference forward is not
counted - it is overhead a cache avoids), peak RSS, and the max relative loss difference over the steps.

    python bench/bench_dpo.py --steps 4 --pairs 32                      # smoke (SmolLM2-135M)
    python bench/bench_dpo.py --rounds 3 --json bench-dpo.json          # the quoted run, quiet machine
    python bench/bench_dpo.py --model tiny                              # tiny random Llama (fixed costs dominate)
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

VARIANTS = ("trl", "trl_precompute", "instructkit")
GEMM_SHAPES = [(576, 1536), (1536, 576), (576, 576), (576, 192)]  # SmolLM2-135M linear layers (in, out)


def make_pairs(n: int, seed: int = 0) -> list[dict[str, str]]:
    """Task-suite arithmetic prompts; chosen = the worked answer, rejected = a wrong bare total."""
    from instructkit.data.tasks.suite.generators import add_sub

    rng = random.Random(seed)
    out = []
    for _ in range(n):
        row = add_sub(rng)
        wrong = int(row["answer"]) + rng.choice([-7, -3, -1, 1, 2, 5])
        out.append({"prompt": row["question"], "chosen": row["rationale"], "rejected": f"It is {wrong}."})
    return out


def load(args: argparse.Namespace) -> tuple[Any, Any, str]:
    """(model, tokenizer, folder): the folder is what instructkit loads; the tiny model is saved once."""
    from instructkit.models import load_model, load_tokenizer, resolve_model
    from instructkit.models.tiny import save_tiny

    path = args.model
    if path != "tiny":
        path = resolve_model(path)
    else:
        path = str(Path(args.work) / "tiny")
        if not Path(path, "config.json").is_file():
            save_tiny(path, hidden_size=256, num_layers=4, num_heads=4, num_kv_heads=2, intermediate_size=512)
    return load_model(path, dtype=args.dtype), load_tokenizer(path), path


def ik_order(n: int, seed: int) -> list[int]:
    import torch
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()


def ik_token_rows(pairs: list[dict[str, str]], tok: Any, max_length: int) -> list[dict[str, list[int]]]:
    """TRL's pre-tokenised columns from instructkit's renderer: the shared prompt, then each side up to and
    including its last trained token (its ``<|im_end|>``); the trailing ``\n`` of the render is left out, as
    instructkit trains no label there. Checks that each side's trained span is exactly that contiguous run."""
    from instructkit.data.preference import PreferencePair, render_pairs
    from instructkit.chat.conversation import Message

    conv = [PreferencePair([Message("user", p["prompt"])], [Message("assistant", p["chosen"])],
                           [Message("assistant", p["rejected"])]) for p in pairs]
    rendered, _ = render_pairs(conv, tok, None, max_length)
    out = []
    for r in rendered:
        row = {"prompt_ids": r.chosen_ids[:r.prompt_len]}
        for side, ids, labels in (("chosen", r.chosen_ids, r.chosen_labels), ("rejected", r.rejected_ids,
                                                                           r.rejected_labels)):
            trained = [i for i, t in enumerate(labels) if t != -100]
            if not trained or trained != list(range(r.prompt_len, trained[-1] + 1)):
                raise RuntimeError(f"{side}: trained tokens are not one run right after the prompt: {trained}")
            row[f"{side}_ids"] = ids[r.prompt_len:trained[-1] + 1]
        out.append(row)
    return out


def run_trl(args: argparse.Namespace, precompute: bool) -> dict[str, Any]:
    import torch
    import trl
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import DPOConfig, DPOTrainer

    # one clock for both tools from the same point: the model on disk and the pairs in memory, to the trained
    # model (loading, tokenizing, trainer set-up and the reference pass inside it on both sides)
    clock = common.StepClock()
    clock.start()
    # instructkit trains bf16 as mixed precision (fp32 master weights and AdamW state, bf16 autocast); TRL gets
    # the same by default: an fp32 model under bf16=True (pure bf16 weights round small AdamW updates away).
    # Its fp32 weights are the bf16-loaded ones upcast, as instructkit's: master weights that start on the bf16
    # grid see no change in the autocast forward until an update passes half a bf16 step, weights loaded
    # straight in fp32 (from the Q4_1 GGUF: off the grid) cross rounding boundaries at once - a different run.
    mixed = args.dtype == "bfloat16" and args.trl_precision == "mixed"
    model, tok, _ = load(args)
    if mixed:
        model = model.float()
    pairs = make_pairs(args.pairs, args.seed)
    order = ik_order(len(pairs), args.seed)
    if args.trl_own_tokens:
        trainer_cls = DPOTrainer
        ds = Dataset.from_list([{"prompt": [{"role": "user", "content": pairs[i]["prompt"]}],
                                 "chosen": [{"role": "assistant", "content": pairs[i]["chosen"]}],
                                 "rejected": [{"role": "assistant", "content": pairs[i]["rejected"]}]}
                                for i in order])
    else:
        class PreTokenized(DPOTrainer):  # the columns are already TRL's prompt_ids / chosen_ids / rejected_ids
            def _prepare_dataset(self, dataset: Any, *a: Any, **k: Any) -> Any:
                return dataset

        trainer_cls = PreTokenized
        rows = ik_token_rows(pairs, tok, args.max_length)
        ds = Dataset.from_list([rows[i] for i in order])
    out = tempfile.mkdtemp(prefix="bench-trl-dpo-")
    cfg = DPOConfig(output_dir=out, beta=0.1, loss_type="sigmoid", max_length=args.max_length,
                    per_device_train_batch_size=args.batch, learning_rate=args.lr, lr_scheduler_type="constant",
                    warmup_steps=0, max_steps=args.steps, logging_steps=1, report_to=[], save_strategy="no",
                    use_cpu=True, seed=args.seed, max_grad_norm=1.0, weight_decay=0.0, optim="adamw_torch_fused",
                    # DPOConfig defaults to bf16=True: bf16 autocast over the model's own dtype on CPU too
                    bf16=args.trl_autocast or mixed, fp16=False,
                    precompute_ref_log_probs=precompute, dataloader_num_workers=0, disable_tqdm=True)
    losses: list[float] = []
    chosen: list[float] = []  # mean policy log-prob of the step's chosen answers: same tokens => same at step 1

    class Logs(TrainerCallback):
        def on_log(self, _args: Any, state: Any, control: Any, logs: dict | None = None, **k: Any) -> None:
            if logs and "loss" in logs:
                losses.append(float(logs["loss"]))
                chosen.append(float(logs.get("logps/chosen", float("nan"))))

    trainer = trainer_cls(model=model, args=cfg, train_dataset=ds, processing_class=tok, callbacks=[Logs()])
    trainer._get_train_sampler = lambda *a, **k: torch.utils.data.SequentialSampler(trainer.train_dataset)
    trainer.train()
    call_s = time.perf_counter() - clock.t0
    clock.stop()
    shutil.rmtree(out, ignore_errors=True)
    return {"trl": trl.__version__, "bf16_autocast": bool(args.trl_autocast or mixed),
            "precision": "mixed (fp32 weights, bf16 autocast)" if mixed else args.dtype, **timing(args, clock, call_s),
            "losses": losses, "logps_chosen": chosen}


def timing(args: argparse.Namespace, clock: Any, call_s: float) -> dict[str, Any]:
    """From the shared optimizer-step clock: the training call, and the median step after the first."""
    steps = clock.step_s
    steady = steps[1:] or steps
    return {"train_call_s": round(call_s, 2), "steps": len(steps), "step_s": [round(x, 3) for x in steps],
            "pairs_per_s": round(args.steps * args.batch / call_s, 3),
            "median_step_s": round(statistics.median(steady), 3) if steady else None}


def run_instructkit(args: argparse.Namespace) -> dict[str, Any]:
    from instructkit.config.base import load_config
    from instructkit.config.recipe import Recipe
    from instructkit.train import train

    from instructkit.models import resolve_model

    # train() loads the model itself, inside the clock (the tiny model is saved to a folder first)
    path = load(args)[2] if args.model == "tiny" else resolve_model(args.model)
    pairs = make_pairs(args.pairs, args.seed)
    out = Path(tempfile.mkdtemp(prefix="bench-ik-dpo-"))
    data = out / "pairs.jsonl"
    data.write_text("".join(json.dumps(p) + "\n" for p in pairs))
    recipe = load_config(Recipe, None, [
        "name=bench", f"seed={args.seed}", f"output_dir={out / 'run'}", f"model.name_or_path={path}",
        f"model.dtype={args.dtype}", f"data.paths=[{data}]", f"data.max_length={args.max_length}",
        "train.objective=dpo", "train.dpo.loss=sigmoid", "train.dpo.beta=0.1", f"train.dpo.ref_cache_dir={out / 'ref'}",
        "train.packing=false", f"train.pack_tokens={2 * args.max_length}", f"train.micro_batch_size={args.batch}",
        "train.grad_accum=1", f"train.lr={args.lr}", "train.scheduler=constant", "train.warmup_steps=0",
        "train.weight_decay=0.0", "train.max_grad_norm=1.0", f"train.max_steps={args.steps}", "train.log_every=1",
        "train.progress=false", "train.tensorboard=false", "train.save_every=0"])
    clock = common.StepClock()
    clock.start()
    res = train(recipe)
    call_s = time.perf_counter() - clock.t0
    clock.stop()
    hist = [json.loads(x) for x in res.metrics_path.read_text().splitlines()]
    steps = [h for h in hist if "loss" in h]
    shutil.rmtree(out, ignore_errors=True)
    return {**timing(args, clock, call_s), "losses": [h["loss"] for h in steps],
            "logps_chosen": [h.get("logps_chosen") for h in steps]}


def run_ceiling(args: argparse.Namespace) -> dict[str, Any]:
    """The GEMM ceiling of --dtype at the model's linear shapes, and the FLOPs of one step's policy pass."""
    model, tok, _ = load(args)
    cfg = model.config
    pairs = make_pairs(args.pairs, args.seed)
    order = ik_order(len(pairs), args.seed)
    rows = ik_token_rows(pairs, tok, args.max_length)
    seqs = [len(rows[i]["prompt_ids"]) + len(rows[i][f"{s}_ids"]) for i in order[:args.steps * args.batch]
            for s in ("chosen", "rejected")]
    n = sum(p.numel() for p in model.parameters())
    flops = sum(common.train_flops_per_token(n, cfg.num_hidden_layers, cfg.hidden_size, common.attention_ctx([k])) * k
                for k in seqs)
    shapes = GEMM_SHAPES if args.model != "tiny" else [(cfg.hidden_size, cfg.intermediate_size),
                                                       (cfg.intermediate_size, cfg.hidden_size)]
    return {"params": n, "tokens": sum(seqs), "policy_flops_per_step": flops / args.steps,
            "ceiling": common.matmul_ceiling(args.dtype, shapes, tokens=2048, min_s=0.3)}


CHILDREN = {"trl": lambda a: run_trl(a, False), "trl_precompute": lambda a: run_trl(a, True),
            "instructkit": run_instructkit, "ceiling": run_ceiling}


def child_main(args: argparse.Namespace) -> None:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        res = CHILDREN[args.variant](args)
    except Exception as e:  # reported next to the other contenders
        import traceback
        traceback.print_exc()
        res = {"error": f"{type(e).__name__}: {e}"}
    res.update(variant=args.variant, peak_rss_mib=common.peak_rss_mib())
    common.emit(res)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--variant", choices=(*VARIANTS, "ceiling"))
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--model", default="smollm2-135m-instruct", help="smollm2-135m-instruct | tiny | an HF folder")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--pairs", type=int, default=192)
    p.add_argument("--batch", type=int, default=8, help="pairs per optimizer step")
    p.add_argument("--steps", type=int, default=24)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--trl-own-tokens", action="store_true",
                   help="let TRL tokenise the pairs itself (it then also trains the \\n after <|im_end|>)")
    p.add_argument("--trl-autocast", action="store_true",
                   help="TRL's DPOConfig default bf16=True (bf16 autocast on CPU): reproduces the 0.23-nat offset")
    p.add_argument("--trl-precision", choices=("mixed", "pure"), default="mixed",
                   help="--dtype bfloat16 only: TRL on an fp32 model under bf16 autocast, as instructkit trains bf16 (mixed), or on pure bf16 weights")
    p.add_argument("--rounds", type=int, default=1, help="interleaved rounds (ours, peer, ...): median and spread")
    p.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "instructkit-bench-dpo"))
    p.add_argument("--timeout", type=float, default=3600)
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args()
    Path(args.work).mkdir(parents=True, exist_ok=True)
    if args.variant:
        return child_main(args)
    hw = common.hardware()
    argv, skip = [], False
    for a in sys.argv[1:]:  # the children get every flag but --variants / --rounds (and their values)
        if skip or a.startswith(("--variants", "--rounds")):
            skip = a in ("--variants", "--rounds") and not skip
            continue
        argv.append(a)
    print(common.header(args.dtype, args.threads or None), flush=True)
    ceil = common.run_child(__file__, "ceiling", argv, args.timeout, print)
    runs = common.interleaved(args.variants.split(","), args.rounds,
                              lambda v, _r: common.run_child(__file__, v, argv, args.timeout, print))
    end = common.run_child(__file__, "ceiling", argv, args.timeout, print)  # load only lowers it: keep the max
    gf = max((c["ceiling"]["best_gflops"] for c in (ceil, end) if "ceiling" in c), default=None)
    print(common.header(args.dtype, args.threads or None))
    if "ceiling" in ceil:
        print(common.gemm_ceiling_line(ceil["ceiling"]) + f"; after the contenders: best "
              f"{end.get('ceiling', {}).get('best_gflops')} GFLOP/s (the larger is used)")
    import dpo_report
    summary = dpo_report.report(args, runs, ceil, gf)
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "hardware": hw, "ceiling": [ceil, end],
                                               "results": runs, "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
