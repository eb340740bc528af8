"""bench_train's instructkit side and the same-run GEMM ceiling."""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import common
from sft_shared import GEMM_SHAPES, leak_check, load, load_data, logprobs, lora_param_count, lr_of, step_stats


def run_ceiling(args: argparse.Namespace) -> dict[str, Any]:
    model, tok, _ = load(args)
    train, heldout, stats = load_data(args, tok)
    lengths = [len(r["input_ids"]) for r in train]
    cfg = model.config
    res = {"params": sum(p.numel() for p in model.parameters()), "layers": cfg.num_hidden_layers,
           "d_model": cfg.hidden_size, "vocab": cfg.vocab_size, "mean_attn_ctx": common.attention_ctx(lengths),
           "train_examples": len(train), "train_tokens": sum(lengths),
           "trained_tokens": sum(1 for r in train for x in r["labels"][1:] if x != -100),
           "mean_len": round(sum(lengths) / len(lengths), 1), "max_len": max(lengths),
           "heldout_examples": len(heldout), "data": stats,
           "trained_token_check": common.check_trained_tokens(train, tok),
           "multi_turn_examples": sum(len(r.get("assistant", [])) > 1 for r in train)}
    res["heldout_loss_before"] = common.eval_loss(model, heldout)
    res["lora_params"] = lora_param_count(model, args.lora_r)
    del model
    return {**res, **run_gemms(args)}


def run_gemms(args: argparse.Namespace) -> dict[str, Any]:
    """Measured before AND after the contenders (the parent keeps the faster): other load on a shared
    machine only ever lowers a measurement, so the max is the better estimate of the ceiling."""
    m_tokens = 4096 if args.dtype == "float32" else 512  # emulated bf16 GEMMs run at ~1 GFLOP/s here
    return {"ceiling": common.matmul_ceiling(args.dtype, GEMM_SHAPES, tokens=m_tokens,
                                             min_s=0.2 if args.quick else 0.4)}


def run_instructkit(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from instructkit.config.base import load_config
    from instructkit.config.recipe import Recipe
    from instructkit.train import train as ik_train
    from instructkit.train.packing import COLLATORS, make_rows, to_examples

    model, tok, path = load(args)
    train, heldout, _ = load_data(args, tok)
    # leak check on the engine's own rows: first packed row with >= 2 examples
    ex, _ = to_examples(train, None)
    rows = make_rows(ex, True, args.row_tokens)
    k = next((i for i, r in enumerate(rows) if int(r["n_examples"]) > 1), 0)
    batch = COLLATORS[True]([rows[k]], pad_id=tok.pad_token_id)
    pos = batch["position_ids"][0].tolist()
    starts = [i for i, p in enumerate(pos) if p == 0] + [len(pos)]
    leak = leak_check(model, batch["input_ids"][0].tolist(), list(zip(starts, starts[1:])),
                      lambda: logprobs(model, input_ids=batch["input_ids"], position_ids=batch["position_ids"]))

    out = tempfile.mkdtemp(prefix="bench-ik-")
    recipe = load_config(Recipe, None, [
        "name=bench", f"output_dir={out}", f"model.name_or_path={path}", f"model.dtype={args.dtype}",
        f"data.max_length={args.max_tokens}", f"train.method={args.method}", f"train.lr={lr_of(args)}",
        "train.epochs=1", "seed=0", f"train.lora.r={args.lora_r}", f"train.lora.alpha={args.lora_alpha}",
        "train.lora.dropout=0.0", "train.lora.target_modules=[all-linear]",
        "train.micro_batch_size=1", "train.grad_accum=1", "train.packing=true", f"train.pack_tokens={args.row_tokens}",
        "train.optimizer=adamw", "train.scheduler=constant", "train.warmup_steps=0", "train.weight_decay=0.0",
        "train.max_grad_norm=1.0", "train.log_every=1", "train.tensorboard=false", "train.progress=false",
        "train.gradient_checkpointing=false"])
    torch.manual_seed(0)
    clock = common.StepClock()  # the same optimizer-step clock as TRL's side
    clock.start()
    result = ik_train(recipe, examples=train, model=model, tokenizer=tok)
    call_s = time.perf_counter() - clock.t0
    clock.stop()
    hist = [json.loads(x) for x in Path(result.metrics_path).read_text().splitlines() if x.strip()]
    steps = [h for h in hist if "loss" in h and "tokens_per_s" in h]
    toks = [h["tokens"] - (steps[i - 1]["tokens"] if i else 0) for i, h in enumerate(steps)]
    times = list(clock.stamps)
    res = {"rows": len(rows), **step_stats(times, toks, clock.t0), "train_call_s": round(call_s, 2),
           "step_s": [round(b - a, 2) for a, b in zip([clock.t0, *times], times)], "step_tokens": toks,
           "losses": [h["loss"] for h in steps], "leak_max_abs_logprob": leak,
           "heldout_loss": common.eval_loss(result.model, heldout), "method": args.method,
           "trainable_params": sum(p.numel() for p in result.model.parameters() if p.requires_grad),
           "engine_summary": {k2: result.summary.get(k2) for k2 in ("real_tokens_per_s", "train_time_s",
                                                                    "wall_time_s", "peak_rss_mib", "steps")}}
    shutil.rmtree(out, ignore_errors=True)
    return res
