"""``instructkit.train.train(recipe, ...)``: the programmatic entry (CLI, demo and task system call it).

This is where the recipe stops: everything below it takes plain arguments.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from instructkit.train.build import _precision, setup_optim


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


def _notice_logging() -> None:
    lg = logging.getLogger("instructkit.train")
    if not lg.handlers:
        h = logging.StreamHandler()
        h.setFormatter(logging.Formatter("%(message)s"))
        lg.addHandler(h)
        lg.setLevel(logging.INFO)


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
        "precision": _precision(m.dtype, accelerator.device.type, accelerator.mixed_precision), "attention": _attention(accelerator, info["wrapper"], m.attn_implementation),
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


def _attention(accelerator: Any, wrapper: Any, configured: str) -> str:
    """The attention that ran: ``sdpa`` on packed rows becomes ``sdpa_packed`` (models/attention.py)."""
    lm = getattr(accelerator.unwrap_model(wrapper), "lm", None)
    return getattr(getattr(lm, "config", None), "_attn_implementation", None) or configured
