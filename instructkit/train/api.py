"""``instructkit.train.train(recipe, ...)``: the programmatic entry (CLI, demo and task system call it).

This is where the recipe stops: everything below it takes plain arguments.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from instructkit.errors import InstructkitError


@dataclass
class TrainResult:
    output_dir: Path
    final_loss: float | None
    metrics_path: Path
    summary: dict[str, Any]
    model_dir: Path | None  # RUN/model: final weights (HF folder, or the adapter for LoRA methods)
    last_checkpoint: Path | None
    best_dir: Path | None
    model: Any = None  # the trained model (unwrapped; a PeftModel for adapter methods)
    tokenizer: Any = None


@dataclass
class TrainData:
    rows: list            # training rows (packed or one example each), tensors
    eval_rows: list       # validation rows
    stats: dict[str, Any]  # counts: examples in/used, truncated, rows, tokens, fill
    report: dict[str, Any]  # the data stage's prepare report (empty for in-memory examples)


def _notice_logging() -> None:
    lg = logging.getLogger("instructkit.train")
    if not lg.handlers:
        h = logging.StreamHandler()
        h.setFormatter(logging.Formatter("%(message)s"))
        lg.addHandler(h)
        lg.setLevel(logging.INFO)


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
                     master_fp32=accelerator.mixed_precision != "no")
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


def train(recipe: Any, *, examples: Sequence[Any] | None = None, eval_examples: Sequence[Any] | None = None,
          model: Any = None, tokenizer: Any = None, eval_fn: Callable[[Any], dict] | None = None,
          accelerator: Any = None) -> TrainResult:
    """Run SFT as described by ``recipe`` (a :class:`instructkit.config.recipe.Recipe`).

    ``examples`` / ``eval_examples``: rendered dicts (``input_ids``, ``labels``) or Conversations;
    None reads ``recipe.data.paths`` (and holds out ``data.val_fraction`` for validation).
    ``model`` / ``tokenizer``: use these instead of loading ``recipe.model.name_or_path``.
    ``eval_fn(model) -> {metric: value}`` runs at every evaluation (task metrics of the eval stage).

    Reads like a torchtune recipe: setup_data -> setup_model -> setup_optim -> run_loop -> outputs.
    """
    import torch
    from accelerate.utils import set_seed

    from instructkit.models import load_tokenizer
    from instructkit.train import checkpoint as ckpt
    from instructkit.train.fingerprint import objective_settings
    from instructkit.train.loop import LoopConfig, run_loop, save_model
    from instructkit.train.metrics import plot_loss
    from instructkit.train.summary import data_summary, hardware, peak_memory, print_summary, write_summary
    from instructkit.train.validate import check_config

    _notice_logging()
    wall0 = time.perf_counter()
    t, m = recipe.train, recipe.model
    from instructkit.train.trackers import Trackers, check_trackers
    check_trackers(t.report_to)  # a missing tracker package fails before anything loads
    if accelerator is None:  # gloo without GPUs, FSDP2 there too, mixed precision from model.dtype
        from instructkit.models.dtype import resolve_dtype
        from instructkit.train.distributed import make_accelerator
        compute, _ = resolve_dtype(m.dtype, "cuda" if torch.cuda.is_available() else "cpu")
        accelerator = make_accelerator(grad_accum=t.grad_accum, compute_dtype=compute,
                                       max_grad_norm=t.max_grad_norm, method=t.method)
    set_seed(recipe.seed)
    run_dir = Path(recipe.resolved_output_dir())
    tokenizer = tokenizer or load_tokenizer(m.name_or_path)
    check_config(recipe, tokenizer)

    # the objective (sft / dpo / reward / grpo / rloo / ppo) picks data -> rows, the loss wrapper and the batch hooks
    from instructkit.train.preference.setup import OBJECTIVES
    objective = OBJECTIVES[t.objective]()
    data = objective.setup_data(recipe, tokenizer, examples=examples, eval_examples=eval_examples)
    if accelerator.is_main_process:  # what the data stage kept and threw away, before any model loads
        from instructkit.train.summary import data_report_lines, data_summary
        for line in data_report_lines(data_summary(data.stats, data.report)):
            logging.getLogger("instructkit.train").info(line)
    wrapper, trainable, total = objective.setup_model(recipe, accelerator, model, data)
    build_optim = setup_optim(recipe, wrapper, accelerator)

    resume_from = ckpt.resolve_resume(t.resume, run_dir)
    if accelerator.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        from instructkit.config.base import dump_yaml
        (run_dir / "recipe.yaml").write_text(dump_yaml(recipe))
        if resume_from is not None:
            logging.getLogger("instructkit.train").info("resuming from %s", resume_from)
    trackers = Trackers(t.report_to, run_dir, config=recipe.model_dump(mode="json"),
                        enabled=accelerator.is_main_process)
    trackers.text("data", data_summary(data.stats, data.report))
    cfg = LoopConfig(run_dir=run_dir, seed=recipe.seed, epochs=t.epochs, max_steps=t.max_steps,
                     micro_batch_size=t.micro_batch_size, grad_accum=t.grad_accum, packing=t.packing,
                     max_grad_norm=t.max_grad_norm, log_every=t.log_every, eval_every=t.eval_every,
                     save_every=t.save_every, keep_last=t.keep_last, best_metric=t.best_metric,
                     best_mode=t.best_mode, progress=t.progress, tensorboard=t.tensorboard,
                     pad_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
                     build_optim=build_optim, objective=objective_settings(t), trackers=trackers,
                     **objective.loop_hooks())
    st, info = run_loop(accelerator, wrapper, tokenizer, data.rows, data.eval_rows, cfg, resume_from=resume_from,
                        eval_fn=eval_fn)

    # --- outputs ----------------------------------------------------------------------------------------
    model_dir = run_dir / "model"
    save_model(accelerator, info["wrapper"], tokenizer, model_dir)
    finish = getattr(objective, "finish", None)  # RL: held-out prompts scored after training
    extra = finish(recipe, accelerator, info["wrapper"]) if finish is not None else {}
    losses = [r["loss"] for r in st.history if "loss" in r]
    evals = [r["eval_loss"] for r in st.history if "eval_loss" in r]
    world = accelerator.num_processes
    summary = {
        "run": str(run_dir), "method": t.method, "optimizer": type(info["optimizer"].optimizer).__name__,
        "precision": _precision(m.dtype, accelerator.device.type, accelerator.mixed_precision), "attention": m.attn_implementation,
        "packing": t.packing,
        "effective_batch": f"{t.micro_batch_size * t.grad_accum * world} "
                           + (f"rows of <= {t.pack_tokens} tokens" if t.packing else "examples"),
        "steps": st.step, "epochs": round(st.step / info["steps_per_epoch"], 3),
        "trainable_params": trainable, "total_params": total,
        "hardware": hardware(world), "wall_time_s": round(time.perf_counter() - wall0, 2),
        "train_time_s": round(info["train_time_s"], 2),
        "eval_and_checkpoint_s": round(info["eval_and_checkpoint_s"], 2),
        # real (non-pad) tokens of this session over the time spent in training steps
        "real_tokens_per_s": round(info["session_tokens"] /
                                   max(info["train_time_s"] - info["eval_and_checkpoint_s"], 1e-9), 1),
        **peak_memory(),
        "final_loss": losses[-1] if losses else None, "final_eval_loss": evals[-1] if evals else None,
        "best": {t.best_metric: st.best} if st.best is not None else None,
        "data": data_summary(data.stats, data.report),  # one source of truth (train/summary.py)
        **extra,
    }
    if accelerator.is_main_process:
        write_summary(summary, run_dir)
        plot_loss(st.history, run_dir / "loss.png")
        trackers.text("summary", summary, step=st.step)
        trackers.finish()
        if t.progress:
            print_summary({k: v for k, v in summary.items() if k not in ("data", "rl")})
    accelerator.wait_for_everyone()
    best = run_dir / "best"
    return TrainResult(output_dir=run_dir, final_loss=summary["final_loss"], metrics_path=run_dir / "metrics.jsonl",
                       summary=summary, model_dir=model_dir, last_checkpoint=info["last_checkpoint"],
                       best_dir=best if best.is_dir() else None,
                       model=accelerator.unwrap_model(info["wrapper"]).lm, tokenizer=tokenizer)
