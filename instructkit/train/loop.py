"""The SFT training loop, written out: forward -> summed loss -> backward -> step -> log.

Runs under ``accelerate`` (single process, DDP, FSDP or DeepSpeed per ``accelerate launch --config_file``).

Loss normalisation (the TRL #2175 bug class): the loss of an optimizer step is the mean over ALL
trained tokens of that step - every micro-batch of the accumulation and every rank. So the loop
fetches the step's micro-batches first, counts their trained tokens, all-reduces the count, and
backpropagates ``sum_of_token_losses * world_size * grad_accum / global_count`` per micro-batch:
DDP averages gradients over ranks (x world_size undoes it) and accelerate (or DeepSpeed) divides the
loss by grad_accum in backward (x grad_accum undoes it). The result is independent of how the same
tokens are split into micro-batches and ranks.
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any, Callable

import torch

from instructkit.errors import ConfigError
from instructkit.train import checkpoint as ckpt
from instructkit.train import distributed as dist
from instructkit.train.fingerprint import check_resume, run_fingerprint
from instructkit.train.interrupt import GracefulStop
from instructkit.train.metrics import MetricsLog
from instructkit.train.packing import COLLATORS
from instructkit.train.progress import FirstMicroBatch, announce_plan


@dataclass
class LoopConfig:
    """Plain arguments of the loop (the recipe stops at :func:`instructkit.train.api.train`)."""

    run_dir: Path
    seed: int
    epochs: float
    max_steps: int | None
    micro_batch_size: int
    grad_accum: int
    packing: bool
    max_grad_norm: float
    log_every: int
    eval_every: int
    save_every: int
    keep_last: int
    best_metric: str
    best_mode: str
    progress: bool
    tensorboard: bool
    pad_id: int
    build_optim: Callable[[int], tuple[Any, Any]]  # total_steps -> (optimizer, scheduler)
    # objective hooks (train/preference): how rows become a batch, and the unit the loss is averaged over
    collate: Callable[..., dict] | None = None  # None: the SFT collators (packed or padded)
    count_fn: Callable[[dict], Any] | None = None  # None: trained tokens (labels != -100)
    objective: dict[str, Any] = field(default_factory=dict)  # the objective's settings (resume fingerprint)
    prepare_step: Callable[[list, int], list] | None = None  # RL: (prompt micro-batches, step) -> rollouts, per step
    updates_per_step: int = 1  # RL's num_iterations (mu): optimizer updates on one step's rollouts, pass k > 0
    reorder: Callable[[list, int, int], list] | None = None  # taking the micro-batches in reorder(micro, step, k)
    trackers: Any = None  # train.report_to: instructkit.train.trackers.Trackers


def trained_tokens(batch: dict) -> Any:
    return (batch["labels"] != -100).sum()


def pop_metrics(accelerator: Any, model: Any, train: bool = True) -> dict[str, float]:
    """Objective metrics accumulated by the wrapper since the last call (DPO: log-probs, margins, accuracy)."""
    pop = getattr(accelerator.unwrap_model(model), "pop_metrics", None)
    return pop(lambda x: accelerator.reduce(x, "sum"), train) if pop is not None else {}


@dataclass
class LoopState:
    step: int = 0
    epoch: int = 0
    step_in_epoch: int = 0
    tokens: int = 0
    best: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    fingerprint: dict[str, Any] = field(default_factory=dict)  # what makes a resumed run the same run


def epoch_loader(accelerator: Any, rows: list, cfg: LoopConfig, epoch: int, shuffle: bool = True) -> Any:
    """Rows in this epoch's order (seeded by seed + epoch, so a resumed run sees the same order), sharded
    across processes by accelerate."""
    order = (torch.randperm(len(rows), generator=torch.Generator().manual_seed(cfg.seed + epoch)).tolist()
             if shuffle else range(len(rows)))
    # a private generator: creating the iterator must not draw from the global torch RNG (exact resume)
    dl = torch.utils.data.DataLoader([rows[i] for i in order], batch_size=cfg.micro_batch_size, shuffle=False,
                                     collate_fn=partial(cfg.collate or COLLATORS[cfg.packing], pad_id=cfg.pad_id),
                                     generator=torch.Generator().manual_seed(cfg.seed))
    return accelerator.prepare_data_loader(dl)


@torch.no_grad()
def evaluate(accelerator: Any, model: Any, loader: Any, eval_fn: Callable | None,
             count_fn: Callable[[dict], Any] | None = None) -> dict[str, float]:
    """Mean loss over trained tokens (or the objective's unit) of the validation rows (+ ``eval_fn(model)``)."""
    model.eval()
    loss = torch.zeros((), device=accelerator.device)
    count = torch.zeros((), device=accelerator.device)
    for batch in loader:
        loss += model(**batch).float()
        count += (count_fn or trained_tokens)(batch)
    loss, count = accelerator.reduce(loss, "sum"), accelerator.reduce(count, "sum")
    out = {"eval_loss": (loss / count.clamp(min=1)).item()}
    out.update({f"eval_{k}": v for k, v in pop_metrics(accelerator, model, train=False).items()})
    if eval_fn is not None:
        out.update({k if k.startswith("eval_") else f"eval_{k}": float(v)
                    for k, v in dist.run_eval_fn(accelerator, model, eval_fn).items()})
    model.train()
    return out


def run_loop(accelerator: Any, model: Any, tokenizer: Any, rows: list, eval_rows: list, cfg: LoopConfig, *,
             resume_from: Path | None = None, eval_fn: Callable | None = None) -> tuple[LoopState, dict[str, Any]]:
    """Train ``model`` (a :class:`CausalLMLoss` wrapper) on packed/padded ``rows``; returns state + timings.

    Ctrl-C / SIGTERM: the current step finishes, is checkpointed, and :class:`TrainingInterrupted` is raised
    (see :mod:`instructkit.train.interrupt`)."""
    with GracefulStop() as stop:
        return _run_loop(accelerator, model, tokenizer, rows, eval_rows, cfg, resume_from, eval_fn, stop)


def _run_loop(accelerator: Any, model: Any, tokenizer: Any, rows: list, eval_rows: list, cfg: LoopConfig,
              resume_from: Path | None, eval_fn: Callable | None, stop: GracefulStop) -> tuple[LoopState, dict]:
    from tqdm.auto import tqdm

    main = accelerator.is_main_process
    # --- sizes: micro-batches per rank per epoch -> optimizer steps ------------------------------------
    steps_per_epoch = math.ceil(len(epoch_loader(accelerator, rows, cfg, 0)) / cfg.grad_accum)
    total_steps = cfg.max_steps or math.ceil(cfg.epochs * steps_per_epoch)
    optimizer, scheduler = cfg.build_optim(total_steps * cfg.updates_per_step)  # the schedule counts updates
    ds = getattr(accelerator.state, "deepspeed_plugin", None)
    if ds is not None and ds.deepspeed_config.get("train_micro_batch_size_per_gpu", "auto") == "auto":
        # DeepSpeed infers it from a prepared dataloader; ours are prepared per epoch, so say it here
        ds.deepspeed_config["train_micro_batch_size_per_gpu"] = cfg.micro_batch_size
    # the model was prepared (DDP/FSDP) before the probe; the optimizer is built on the prepared
    # parameters (FSDP's sharded/flat ones) and prepared now. DeepSpeed takes both in one prepare.
    # The scheduler is NOT prepared: accelerate would step it num_processes times per step.
    if dist.kind(accelerator) == "DEEPSPEED":
        model, optimizer = accelerator.prepare(model, optimizer)
    else:
        optimizer = accelerator.prepare_optimizer(optimizer)
    # FSDP: no no_sync - it would hold unsharded gradients through the accumulation; reduce-scatter per
    # micro-batch keeps them sharded
    skip_sync = dist.kind(accelerator) != "FSDP"
    eval_loader = epoch_loader(accelerator, eval_rows, cfg, 0, shuffle=False) if eval_rows else None

    st = LoopState()
    fingerprint = run_fingerprint(rows, seed=cfg.seed, total_steps=total_steps, world_size=accelerator.num_processes,
                                  micro_batch_size=cfg.micro_batch_size, grad_accum=cfg.grad_accum,
                                  packing=cfg.packing, objective=cfg.objective)
    if resume_from is not None:
        check_resume(ckpt.read_state(resume_from), fingerprint, resume_from)
        saved = ckpt.load_checkpoint(accelerator, resume_from, wrapper=model, optimizer=optimizer,
                                     scheduler=scheduler)
        st = LoopState(saved["step"], saved["epoch"], saved["step_in_epoch"], saved["tokens"], saved["best"],
                       saved["history"])
    st.fingerprint = fingerprint
    log = MetricsLog(cfg.run_dir, enabled=main, tensorboard=cfg.tensorboard, history=st.history,
                     trackers=cfg.trackers)
    st.history = log.history
    # ALL parameters, not only the trainable ones: accelerate hands clipping to FSDP (norm over all shards)
    # only when the list IS model.parameters(); a filtered list (LoRA) silently clips by each rank's local
    # shard norm. Frozen parameters have no gradient and add nothing to the norm.
    params = list(model.parameters())
    bar = tqdm(total=total_steps, initial=st.step, disable=not (main and cfg.progress), unit="step",
               dynamic_ncols=True)
    device = accelerator.device
    win_loss, win_count, win_tokens = (torch.zeros((), device=device) for _ in range(3))
    win_start, t_start, last_ckpt = time.perf_counter(), time.perf_counter(), None
    side_time, session_tokens = 0.0, 0  # eval/checkpoint time is kept out of the throughput
    announce_plan(rows, total_steps=total_steps, steps_per_epoch=steps_per_epoch, start_step=st.step,
                  micro_batch_size=cfg.micro_batch_size, grad_accum=cfg.grad_accum,
                  world=accelerator.num_processes, enabled=main)
    first = FirstMicroBatch(grad_accum=cfg.grad_accum, steps_left=total_steps - st.step, enabled=main)
    model.train()

    while st.step < total_steps:
        loader = epoch_loader(accelerator, rows, cfg, st.epoch)
        if st.step_in_epoch:  # resume mid-epoch: same order, skip what was already consumed
            loader = accelerator.skip_first_batches(loader, st.step_in_epoch * cfg.grad_accum)
        batches = iter(loader)
        while st.step < total_steps:
            if not (micro := list(islice(batches, cfg.grad_accum))):
                break
            micro = cfg.prepare_step(micro, st.step) if cfg.prepare_step else micro  # RL: rollouts, current weights
            for k in range(cfg.updates_per_step):  # RL's mu; 1. trained tokens of the step, all micro-batches + ranks
                micro = cfg.reorder(micro, st.step, k) if k and cfg.reorder else micro
                count = accelerator.reduce(sum((cfg.count_fn or trained_tokens)(mb) for mb in micro), "sum")
                scale = accelerator.num_processes * accelerator.gradient_accumulation_steps / count
                # 2. forward + backward per micro-batch; gradients sync only on the last one
                for i, mb in enumerate(micro):
                    last = i == len(micro) - 1
                    accelerator.sync_gradients = last
                    with contextlib.nullcontext() if last or not skip_sync else accelerator.no_sync(model):
                        loss_sum = model(**mb)
                        accelerator.backward(loss_sum * scale)
                    first.tick()  # the ETA, long before the first step ends
                    win_loss += loss_sum.detach()
                    win_tokens += mb["num_tokens"]
                win_count += count
                # 3. clip, step, schedule
                grad_norm = dist.clip_grad_norm(accelerator, params, cfg.max_grad_norm) if cfg.max_grad_norm else None
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
            st.step += 1
            st.step_in_epoch += 1
            bar.update(1)
            # 4. log (the only host syncs of the loop)
            if st.step % cfg.log_every == 0 or st.step == total_steps:
                loss = (accelerator.reduce(win_loss, "sum") / win_count).item()
                ntok = int(accelerator.reduce(win_tokens, "sum").item())
                now = time.perf_counter()
                st.tokens += ntok
                session_tokens += ntok
                row = {"step": st.step, "epoch": round(st.epoch + st.step_in_epoch / steps_per_epoch, 4),
                       "loss": loss, "lr": scheduler.get_last_lr()[0], "tokens": st.tokens,
                       "tokens_per_s": round(ntok / (now - win_start), 1),
                       "grad_norm": None if grad_norm is None else float(grad_norm),
                       **pop_metrics(accelerator, model)}
                log.log(row)
                bar.set_postfix(loss=f"{loss:.4f}", tok_s=f"{row['tokens_per_s']:.0f}")
                win_loss.zero_(), win_count.zero_(), win_tokens.zero_()
                win_start = time.perf_counter()
            # 5. evaluate, keep the best
            pause = time.perf_counter()
            if eval_loader is not None and (st.step == total_steps or (cfg.eval_every and
                                                                      st.step % cfg.eval_every == 0)):
                metrics = evaluate(accelerator, model, eval_loader, eval_fn, cfg.count_fn)
                log.log({"step": st.step, **metrics})
                if cfg.best_metric not in metrics:
                    raise ConfigError(f"train.best_metric={cfg.best_metric!r} is not among the eval metrics "
                                   f"{sorted(metrics)}")
                val = metrics[cfg.best_metric]
                if st.best is None or (val < st.best if cfg.best_mode == "min" else val > st.best):
                    st.best = val
                    save_model(accelerator, model, tokenizer, cfg.run_dir / "best")
            # 6. checkpoint (at the end of an epoch the data position rolls over to the next one)
            if (cfg.save_every and st.step % cfg.save_every == 0) or st.step == total_steps:
                last_ckpt = save(accelerator, model, tokenizer, optimizer, scheduler, st, cfg, total_steps,
                                 steps_per_epoch)
            paused = time.perf_counter() - pause
            side_time += paused
            win_start += paused
            # 7. a signal arrived: this step is complete; checkpoint it (unless just done) and stop
            if stop.requested(accelerator):
                if last_ckpt is None or last_ckpt.name != f"checkpoint-{st.step}":
                    last_ckpt = save(accelerator, model, tokenizer, optimizer, scheduler, st, cfg, total_steps,
                                     steps_per_epoch)
                bar.close(), log.close()
                raise stop.interrupted(st.step, total_steps, last_ckpt)
        if st.step < total_steps or st.step_in_epoch >= steps_per_epoch:
            st.epoch, st.step_in_epoch = st.epoch + 1, 0
    bar.close(), log.close()
    return st, {"train_time_s": time.perf_counter() - t_start, "eval_and_checkpoint_s": side_time,
                "session_tokens": session_tokens, "total_steps": total_steps,
                "steps_per_epoch": steps_per_epoch, "last_checkpoint": last_ckpt, "optimizer": optimizer,
                "wrapper": model}


def save(accelerator: Any, model: Any, tokenizer: Any, optimizer: Any, scheduler: Any, st: LoopState,
         cfg: LoopConfig, total_steps: int, steps_per_epoch: int) -> Path:
    epoch, in_epoch = st.epoch, st.step_in_epoch
    if in_epoch >= steps_per_epoch:  # the epoch is done: resume starts the next one
        epoch, in_epoch = epoch + 1, 0
    state = {"step": st.step, "epoch": epoch, "step_in_epoch": in_epoch, "tokens": st.tokens, "best": st.best,
             "seed": cfg.seed, "total_steps": total_steps, "fingerprint": st.fingerprint, "history": st.history}
    path = ckpt.save_checkpoint(accelerator, cfg.run_dir, f"checkpoint-{st.step}", wrapper=model,
                                tokenizer=tokenizer, optimizer=optimizer, scheduler=scheduler, state=state)
    if accelerator.is_main_process:
        ckpt.prune(cfg.run_dir, cfg.keep_last)
    return path


def save_model(accelerator: Any, model: Any, tokenizer: Any, out: Path) -> None:
    """Weights only (HF folder or adapter), atomically."""
    tmp = out.parent / f".tmp-{out.name}"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    with ckpt.cleaned_on_failure(accelerator, tmp, out):
        ckpt.save_weights(accelerator, model, tokenizer, tmp)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    accelerator.wait_for_everyone()
