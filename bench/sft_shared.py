"""bench_train's pieces every child uses: the data slice, the model, the packing-leak check, step rates."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import common

LABELS = {"trl_pad": "TRL SFTTrainer, padded", "trl_bfd": "TRL SFTTrainer, packing=bfd (padding-free)",
          "instructkit": "instructkit train (BFD packing)"}

GEMM_SHAPES = [(576, 1536), (1536, 576), (576, 576), (576, 192)]

LEAK_TOL = {"float32": 2e-3, "bfloat16": 2e-3}  # max |log-prob difference| still numerics (the check runs in fp32)


def _slice(args: argparse.Namespace, tokenizer: Any, limit: int, skip: int = 0) -> tuple[list[dict], dict]:
    kw = dict(max_tokens=args.max_tokens, tokenizer=tokenizer, skip=skip)
    if args.data == "sharegpt":
        return common.sharegpt_conversations(limit, path=args.sharegpt_json, **kw)
    if args.data == "self_instruct":
        return common.self_instruct_conversations(limit, **kw)
    return common.t0_conversations(limit, **kw)


def load_data(args: argparse.Namespace, tokenizer: Any) -> tuple[list[dict], list[dict], dict]:
    """The training slice (``--examples``, or as many as fill ``--steps`` packed rows) and a disjoint held-out
    slice taken after it. Same function, same arguments in every child: every contender gets identical records."""
    n = args.examples
    if args.steps:  # the fewest leading examples whose BFD packing gives >= --steps rows
        from instructkit.train.packing import best_fit_decreasing
        pool, _ = _slice(args, tokenizer, args.steps * 6)
        lens = [len(r["input_ids"]) for r in pool]
        if len(best_fit_decreasing(lens, args.row_tokens)) < args.steps:  # said, not silently fewer steps
            print(f"notice: the data holds only {len(best_fit_decreasing(lens, args.row_tokens))} rows of "
                  f"{args.row_tokens} tokens, fewer than --steps {args.steps}", file=sys.stderr)
        lo, hi = 1, len(pool)
        while lo < hi:
            mid = (lo + hi) // 2
            if len(best_fit_decreasing(lens[:mid], args.row_tokens)) >= args.steps:
                hi = mid
            else:
                lo = mid + 1
        n = lo
    train, st1 = _slice(args, tokenizer, n)
    heldout, _ = _slice(args, tokenizer, args.eval_examples, skip=len(train))
    return train, heldout, {"data": args.data, **st1}


def load(args: argparse.Namespace) -> tuple[Any, Any, str]:
    import torch

    from instructkit.models import load_model, load_tokenizer, resolve_model

    torch.manual_seed(0)
    path = resolve_model(args.model)
    return load_model(path, dtype=args.dtype, attn_implementation="sdpa"), load_tokenizer(path), path


def logprobs(model: Any, **kw: Any) -> Any:
    import torch

    with torch.no_grad():
        return torch.log_softmax(model(**kw, use_cache=False).logits.float(), -1)[0]


def leak_check(model: Any, row_ids: list[int], segments: list[tuple[int, int]], forward_row: Any) -> float:
    """Max |log p| difference between each example inside its packed row and the same example alone, in
    float32: in bf16 the packed and lone forwards round differently (max over 49k log-probs reached 0.44-0.54
    for both tools on a 2026-12-06 run), which hides a real leak in noise. bf16 -> fp32 -> bf16 is exact, so
    the weights are restored bit for bit, each tensor to its own dtype (LoRA adapters may stay fp32)."""
    import torch

    was = model.training
    dtypes = {n: t.dtype for n, t in [*model.named_parameters(), *model.named_buffers()]}
    model.eval()
    model.float()
    try:
        packed = forward_row()
        worst = 0.0
        for s, e in segments:
            alone = logprobs(model, input_ids=torch.tensor([row_ids[s:e]]))
            worst = max(worst, (packed[s:e] - alone).abs().max().item())
    finally:  # .float() keeps Parameter objects but replaces buffers: restore both by name
        for mname, mod in model.named_modules():
            for k, t in [*mod._parameters.items(), *mod._buffers.items()]:
                dt = dtypes.get(f"{mname}.{k}" if mname else k)
                if t is not None and dt is not None and t.dtype != dt:
                    if k in mod._parameters:
                        t.data = t.data.to(dt)
                    else:
                        mod._buffers[k] = t.to(dt)
        model.train(was)
    return worst


def step_stats(times: list[float], tokens: list[int], t0: float) -> dict[str, Any]:
    """tokens/s over steps 2..N (step 1 pays one-off warm-up) and over all steps."""
    steady_t = times[-1] - times[0] if len(times) > 1 else float("nan")
    return {"steps": len(times), "real_tokens": sum(tokens),
            "tokens_per_s": round(sum(tokens[1:]) / steady_t, 2) if len(times) > 1 else None,
            "tokens_per_s_all_steps": round(sum(tokens) / (times[-1] - t0), 2) if times else None,
            "train_s": round(times[-1] - t0, 2) if times else None}


def lr_of(args: argparse.Namespace) -> float:
    return args.lora_lr if args.method == "lora" else args.lr


def lora_param_count(model: Any, r: int) -> int:
    """Parameters LoRA r adds on every linear layer of the decoder (peft 'all-linear': not the LM head)."""
    import torch
    return sum(r * (m.in_features + m.out_features) for n, m in model.named_modules()
               if isinstance(m, torch.nn.Linear) and "lm_head" not in n)


def segments_of(ids: list[int], lengths: list[int]) -> tuple:
    out, s = [], 0
    for n in lengths:
        out.append(tuple(ids[s:s + n]))
        s += n
    return tuple(sorted(out))
