"""bench_train's TRL side: SFTTrainer (BFD packing or padded) on instructkit's rendered records, fused AdamW,
timed by the shared optimizer-step clock."""

from __future__ import annotations

import argparse
import math
import shutil
import tempfile
from typing import Any

import common
from sft_shared import leak_check, load, load_data, logprobs, lr_of, segments_of, step_stats


def mirror_engine_order(trainer: Any, train: list[dict], row_tokens: int) -> bool:
    """Feed TRL's BFD rows in the order instructkit trains its rows, so per-step losses are comparable.

    Both pack best-fit-decreasing into rows of ``row_tokens``; when the two packings hold the same
    examples per row (checked), TRL's rows are reordered like instructkit's epoch 0 (mirrors
    ``instructkit.train.loop.epoch_loader``: ``randperm(rows, seed + epoch)``, seed 0). Returns whether it could.
    """
    import torch

    from instructkit.train.packing import make_rows, to_examples

    ex, _ = to_examples(train, None)
    rows = make_rows(ex, True, row_tokens)
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(0)).tolist()

    def ours(r: dict) -> tuple:
        pos = r["position_ids"].tolist()
        starts = [i for i, p in enumerate(pos) if p == 0] + [len(pos)]
        return segments_of(r["input_ids"].tolist(), [b - a for a, b in zip(starts, starts[1:])])

    ds = trainer.train_dataset
    theirs = {segments_of(list(ds[j]["input_ids"]), list(ds[j]["seq_lengths"])): j for j in range(len(ds))}
    want = [ours(rows[i]) for i in order]
    if sorted(want) != sorted(theirs) or len(theirs) != len(ds):
        return False
    trainer.train_dataset = ds.select([theirs[w] for w in want])
    return True


def run_trl(args: argparse.Namespace, packing: bool) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    import trl

    # instructkit trains full bf16 as mixed precision (fp32 master weights and AdamW state, bf16 autocast):
    # pure bf16 weights round away AdamW updates below bf16's resolution, so TRL on pure bf16 reaches a worse
    # loss (2026-12-06: held-out 1.6587 vs 1.5727). "mixed" gives TRL the same: an fp32 model, bf16=True.
    mixed = args.method == "full" and args.dtype == "bfloat16" and args.trl_precision == "mixed"
    model, tok, _ = load(args)
    if mixed:  # the bf16-loaded weights upcast, as instructkit's master weights (bench_dpo.py says why)
        model = model.float()
    train, heldout, _ = load_data(args, tok)
    out = tempfile.mkdtemp(prefix="bench-trl-")
    cfg = SFTConfig(
        output_dir=out, report_to=[], save_strategy="no", logging_steps=1, disable_tqdm=True, seed=0, data_seed=0,
        use_cpu=True, bf16=mixed, fp16=False,  # else the model is already in --dtype; no autocast on top
        per_device_train_batch_size=1 if packing else args.pad_batch, gradient_accumulation_steps=1,
        num_train_epochs=1,  # every example exactly once
        learning_rate=lr_of(args), lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
        adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8, max_grad_norm=1.0,
        optim="adamw_torch_fused",  # as instructkit (train/optim.py); TRL's default single-tensor AdamW is slower
        # SFTConfig turns checkpointing on by default; off is TRL's faster setting and matches instructkit's default
        gradient_checkpointing=args.trl_gradient_checkpointing,
        train_sampling_strategy="sequential", dataloader_num_workers=0,
        packing=packing, packing_strategy="bfd", max_length=args.row_tokens if packing else args.max_tokens,
        completion_only_loss=True,  # labels are given, so this is what they already encode
    )
    ds = Dataset.from_list([{"input_ids": r["input_ids"], "labels": r["labels"]} for r in train])
    peft_cfg = None
    if args.method == "lora":  # TRL's own LoRA path (peft_config); same adapter as instructkit's, no dropout
        from peft import LoraConfig
        peft_cfg = LoraConfig(r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=0.0,
                              target_modules="all-linear", bias="none", task_type="CAUSAL_LM")
    torch.manual_seed(0)  # the LoRA A init draws from here, as instructkit's set_seed(0) before get_peft_model
    trainer = SFTTrainer(model=model, args=cfg, train_dataset=ds, processing_class=tok, peft_config=peft_cfg)
    model = trainer.model
    mirrored = mirror_engine_order(trainer, train, args.row_tokens) if packing else None

    # leak check on the first training row that holds >= 2 examples (packed) / a padded pair (padded)
    coll = trainer.data_collator
    if packing:
        rows = trainer.train_dataset
        k = next((i for i in range(len(rows)) if len(rows[i]["seq_lengths"]) > 1), 0)
        row = rows[k]
        bounds = [0, *torch.tensor(row["seq_lengths"]).cumsum(0).tolist()]
        batch = coll([row])
        kw = {k2: v for k2, v in batch.items() if k2 != "labels"}
        leak = leak_check(model, row["input_ids"], list(zip(bounds, bounds[1:])), lambda: logprobs(model, **kw))
        n_rows = len(rows)
    else:
        a, b = sorted(train[:2], key=lambda r: -len(r["input_ids"]))
        batch = coll([{"input_ids": a["input_ids"]}, {"input_ids": b["input_ids"]}])
        kw = {k2: v for k2, v in batch.items() if k2 != "labels"}

        def second_row() -> Any:
            with torch.no_grad():
                return torch.log_softmax(model(**kw, use_cache=False).logits.float(), -1)[1]
        leak = leak_check(model, b["input_ids"], [(0, len(b["input_ids"]))], second_row)
        n_rows = math.ceil(len(train) / args.pad_batch)

    tokens: list[int] = []
    seen_labels: list[tuple] = []  # the labels TRL's collator hands the model, per example
    inner = trainer.data_collator

    def counting_collator(examples: list[dict]) -> Any:
        tokens.append(sum(len(e["input_ids"]) for e in examples))
        batch = inner(examples)
        for row_lab, row_ids, ex_lens in zip(batch["labels"].tolist(), batch["input_ids"].tolist(),
                                             [e.get("seq_lengths", [len(e["input_ids"])]) for e in examples]
                                             if not packing else [examples[0]["seq_lengths"]]):
            s0 = 0
            for n in ex_lens:
                seen_labels.append((tuple(row_ids[s0:s0 + n]), tuple(row_lab[s0:s0 + n])))
                s0 += n
        return batch

    trainer.data_collator = counting_collator
    clock = common.StepClock()  # the same optimizer-step clock as instructkit's side
    clock.start()
    trainer.train()
    clock.stop()
    times, t0 = list(clock.stamps), [clock.t0]
    # accelerate's loader fetches one batch ahead: keep the counts of the batches that were stepped on
    tokens = tokens[:len(times)]
    want = sorted((tuple(r["input_ids"]), tuple(r["labels"])) for r in train)
    got = sorted(set(seen_labels))  # accelerate may fetch one batch twice (prefetch); duplicates are not training
    same_tokens = {"identical": got == want, "examples_seen": len(got), "examples": len(want),
                   "trained_tokens": sum(x != -100 for _, lab in got for x in lab[1:])}
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    res = {"trl": trl.__version__, "rows": n_rows, **step_stats(times, tokens, t0[0]), "losses": losses,
           "step_s": [round(b - a, 2) for a, b in zip([t0[0], *times], times)], "step_tokens": tokens,
           "leak_max_abs_logprob": leak, "heldout_loss": common.eval_loss(model, heldout),
           "gradient_checkpointing": args.trl_gradient_checkpointing,
           "precision": "mixed (fp32 weights, bf16 autocast)" if mixed else args.dtype, "same_rows_as_instructkit": mirrored,
           "trained_tokens_vs_records": same_tokens, "method": args.method,
           "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad)}
    shutil.rmtree(out, ignore_errors=True)
    return res
