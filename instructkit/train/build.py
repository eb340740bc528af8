"""The training run's pieces, in the order :func:`instructkit.train.api.train` calls them: data -> rows
(:func:`setup_data`), the model placed, wrapped and prepared (:func:`setup_model`), the start-up probe
(:func:`probe_model`), the optimizer built after ``prepare`` (:func:`setup_optim`).

Objectives (SFT here, DPO/reward in ``train/preference``, RL in ``train/rl``) compose these; they live
apart from ``api.py`` so that an objective never imports the entry point that chooses it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from instructkit.errors import InstructkitError


@dataclass
class TrainData:
    rows: list            # training rows (packed or one example each), tensors
    eval_rows: list       # validation rows
    stats: dict[str, Any]  # counts: examples in/used, truncated, rows, tokens, fill
    report: dict[str, Any]  # the data stage's prepare report (empty for in-memory examples)


def setup_data(recipe: Any, tokenizer: Any, *, examples: Sequence[Any] | None = None,
               eval_examples: Sequence[Any] | None = None) -> TrainData:
    """Recipe data -> packed/padded rows (validated before the model is even loaded)."""
    from instructkit.train.data import load_records, split, to_records
    from instructkit.train.packing import make_rows, to_examples
    from instructkit.train.validate import check_eval_data

    t, d, m = recipe.train, recipe.data, recipe.model
    mu = getattr(t, "muppet", None)
    data_report: dict[str, Any] = {}
    if examples is None:
        records, data_report = load_records(d.paths, tokenizer, template=m.chat_template, max_length=d.max_length,
                                            fmt=d.format, on_error=d.on_error, limit=d.limit,
                                            num_proc=d.num_proc, cache_dir=d.cache_dir, keep_source=mu is not None,
                                            truncate=d.truncate, repair_leading_assistant=d.repair_leading_assistant)
        if eval_examples is None:
            records, eval_records = split(records, d.val_fraction, recipe.seed)
        else:
            eval_records = to_records(eval_examples, tokenizer, m.chat_template, d.max_length)
    else:
        records = to_records(examples, tokenizer, m.chat_template, d.max_length)
        eval_records = to_records(eval_examples, tokenizer, m.chat_template, d.max_length) if eval_examples else []
    check_eval_data(t.eval_every, bool(eval_records))
    if mu is not None:  # task ids and per-task loss weights (train/muppet.py)
        from instructkit.train.muppet import prepare_records
        muppet_info = prepare_records(records + eval_records, mu)
    train_ex, stats = to_examples(records, d.max_length)
    eval_ex, _ = to_examples(eval_records, d.max_length)
    if not train_ex:
        from instructkit.train.summary import data_report_lines, data_summary
        where = ", ".join(map(str, d.paths)) if examples is None else "the examples given"
        lines = data_report_lines(data_summary(stats, data_report))
        raise InstructkitError(f"no training example left in {where}:\n  " + "\n  ".join(lines))
    if mu is not None:
        from instructkit.train.muppet import muppet_rows
        rows, mstats = muppet_rows(train_ex, t.packing, t.pack_tokens, mu.min_tasks, recipe.seed)
        stats["muppet"] = {**muppet_info, **mstats}
    else:
        rows = make_rows(train_ex, t.packing, t.pack_tokens)
    eval_rows = make_rows(eval_ex, t.packing, t.pack_tokens) if eval_ex else []
    real_tokens = sum(len(e) for e in train_ex)
    stats.update(rows=len(rows), real_tokens=real_tokens,
                 trained_tokens=sum(e.n_trained for e in train_ex), eval_examples=len(eval_ex),
                 fill=round(real_tokens / (len(rows) * t.pack_tokens), 4) if t.packing else None)
    return TrainData(rows=rows, eval_rows=eval_rows, stats=stats, report=data_report)


def _precision(dtype: str, device_type: str, mixed: str = "no") -> str:
    """What the run computed in and why (``dtype: auto`` is decided by a measured probe)."""
    from instructkit.models.dtype import resolve_dtype

    picked, why = resolve_dtype(dtype, device_type)
    out = picked if dtype != "auto" else f"{picked} ({why})"
    return out if mixed == "no" else f"{out}, mixed precision: fp32 master weights and optimizer state"


def setup_model(recipe: Any, accelerator: Any, model: Any = None, *, wrap: Callable[[Any], Any] | None = None,
                packing: bool | None = None) -> tuple[Any, int, int]:
    """Load (or take) the model on its device, apply the method (full/LoRA/DoRA/QLoRA), wrap it with the
    loss (``wrap(lm)``; default the SFT loss), DDP/FSDP-prepare it, and probe it where it trains.

    Returns ``(prepared wrapper, trainable_params, total_params)``."""
    from instructkit.train import distributed as dist
    from instructkit.train.loss import CausalLMLoss
    from instructkit.train.methods import AdapterSpec, build_model, param_counts

    t, m = recipe.train, recipe.model
    spec = AdapterSpec(t.lora.r, t.lora.alpha, t.lora.dropout, list(t.lora.target_modules))
    lm = build_model(m.name_or_path, method=t.method, dtype=m.dtype, attn_implementation=m.attn_implementation,
                     spec=spec, gradient_checkpointing=t.gradient_checkpointing, model=model,
                     device_type=accelerator.device.type, device_map=dist.load_device_map(accelerator),
                     on_meta=dist.meta_rank(accelerator) and model is None,
                     master_fp32=accelerator.mixed_precision != "no",
                     packed=t.packing if packing is None else packing)
    if dist.meta_rank(accelerator) and model is None:
        logging.getLogger("instructkit.train").info(
            "rank %d: model built on the meta device (no weights read); rank 0's are broadcast at prepare",
            accelerator.process_index)
    trainable, total = param_counts(lm)
    wrapper = dist.prepare_model(accelerator, (wrap or (lambda x: CausalLMLoss(x, t.loss_chunk_size)))(lm))
    probe_model(recipe, accelerator, wrapper, t.packing if packing is None else packing)
    return wrapper, trainable, total


def probe_model(recipe: Any, accelerator: Any, wrapper: Any, packing: bool) -> dict[str, float]:
    """Refuse before any step if packed examples would see each other or the loss would miss the model's
    logit post-processing (train/probe.py says why these go wrong silently). Runs after placement and
    prepare, on the training device, in the compute dtype, under the run's autocast."""
    import torch

    from instructkit.models.dtype import resolve_dtype
    from instructkit.train.distributed import run_on_model
    from instructkit.train.probe import check_model

    m = recipe.model
    compute = getattr(torch, resolve_dtype(m.dtype, accelerator.device.type)[0])
    return run_on_model(accelerator, wrapper, lambda lm: check_model(
        lm, packing=packing, attn_implementation=m.attn_implementation, device=accelerator.device,
        compute_dtype=compute, autocast=accelerator.autocast()))


def setup_optim(recipe: Any, wrapper: Any, accelerator: Any) -> Callable[[int], tuple[Any, Any]]:
    """``total_steps -> (optimizer, scheduler)``: the loop calls it once it knows the number of steps."""
    from instructkit.train.optim import build_optimizer, build_scheduler, warmup_steps_for

    t = recipe.train

    def build_optim(total_steps: int) -> tuple[Any, Any]:
        opt = build_optimizer(wrapper, t.optimizer, lr=t.lr, weight_decay=t.weight_decay, betas=t.betas, eps=t.eps,
                              device_type=accelerator.device.type)
        warm = warmup_steps_for(total_steps, t.warmup_steps, t.warmup_ratio)
        return opt, build_scheduler(opt, t.scheduler, warmup_steps=warm, total_steps=total_steps)

    return build_optim
