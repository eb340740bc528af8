"""Checkpoints that resume exactly: weights, optimizer, scheduler, RNG states, data position, metrics.

Layout of ``RUN/checkpoint-<step>/``::

    model.safetensors + config.json            full fine-tuning (HF folder, loadable as is)
    adapter_model.safetensors + adapter_config.json   LoRA/DoRA/QLoRA (adapter only)
    tokenizer files
    optimizer.pt, scheduler.pt                 (FSDP/DeepSpeed: accelerate_state/ from accelerator.save_state)
    rng_state_<rank>.pt                        python, numpy, torch (+cuda) generator states per process
    trainer_state.json                         step, epoch, step_in_epoch, seed, history, best

A checkpoint is written into a ``.tmp-*`` folder and renamed with ``os.replace`` only once complete, so
a run killed mid-write never leaves a half checkpoint that ``resume=auto`` would pick.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

STATE_FILE = "trainer_state.json"
_SHARDED = ("FSDP", "DEEPSPEED")


def _sharded(accelerator: Any) -> bool:
    return str(accelerator.distributed_type).split(".")[-1] in _SHARDED


def rng_state() -> dict[str, Any]:
    st = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict[str, Any]) -> None:
    random.setstate(st["python"])
    np.random.set_state(st["numpy"])
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete step checkpoints, oldest first."""
    run = Path(run_dir)
    if not run.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in run.iterdir()
             if (m := re.fullmatch(r"checkpoint-(\d+)", p.name)) and (p / STATE_FILE).is_file()]
    return [p for _, p in sorted(found)]


def save_weights(accelerator: Any, wrapper: Any, tokenizer: Any, out: Path) -> None:
    """HF folder (full) or adapter folder (peft); all ranks call (FSDP/DeepSpeed gather here)."""
    state = accelerator.get_state_dict(wrapper)
    if accelerator.is_main_process:
        lm = accelerator.unwrap_model(wrapper).lm
        sd = {k[len("lm."):]: v for k, v in state.items() if k.startswith("lm.")}
        lm.save_pretrained(out, state_dict=sd, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(out)


@contextmanager
def cleaned_on_failure(accelerator: Any, tmp: Path, final: Path) -> Iterator[None]:
    """Writes into ``tmp`` that fail (disk full, permission lost, a second Ctrl-C) remove ``tmp``; a write
    error becomes one line naming ``final``, the cause and the last good checkpoint (which is kept)."""
    from instructkit.errors import InstructkitError
    from instructkit.outputs import write_error, write_errors

    try:
        yield
    except BaseException as e:
        if accelerator.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, write_errors()):
            good = [p for p in list_checkpoints(final.parent) if p != final]
            kept = f"; the last good checkpoint {good[-1]} is kept" if good else ""
            raise InstructkitError(f"{write_error(final, e)}{kept}") from None
        raise


def save_checkpoint(accelerator: Any, run_dir: Path, name: str, *, wrapper: Any, tokenizer: Any, optimizer: Any,
                    scheduler: Any, state: dict[str, Any]) -> Path:
    final = run_dir / name
    tmp = run_dir / f".tmp-{name}"
    with cleaned_on_failure(accelerator, tmp, final):
        if accelerator.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        accelerator.wait_for_everyone()
        save_weights(accelerator, wrapper, tokenizer, tmp)
        if _sharded(accelerator):
            accelerator.save_state(str(tmp / "accelerate_state"))
        elif accelerator.is_main_process:
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(rng_state(), tmp / f"rng_state_{accelerator.process_index}.pt")
        if accelerator.is_main_process:
            torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
            if getattr(accelerator, "scaler", None) is not None:  # fp16 GradScaler: the loss scale is state
                torch.save(accelerator.scaler.state_dict(), tmp / "scaler.pt")
            (tmp / STATE_FILE).write_text(json.dumps(state, indent=1))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    accelerator.wait_for_everyone()
    return final


def copy_atomic(src: Path, dst: Path) -> None:
    tmp = dst.parent / f".tmp-{dst.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp)
    if dst.exists():
        shutil.rmtree(dst)
    os.replace(tmp, dst)


def prune(run_dir: Path, keep_last: int) -> None:
    for p in list_checkpoints(run_dir)[:-keep_last]:
        shutil.rmtree(p, ignore_errors=True)


def load_weights(lm: Any, ckpt: Path) -> None:
    from safetensors.torch import load_file

    if (ckpt / "adapter_model.safetensors").is_file():
        from peft import set_peft_model_state_dict

        res = set_peft_model_state_dict(lm, load_file(str(ckpt / "adapter_model.safetensors")))
        bad = [k for k in getattr(res, "unexpected_keys", [])]
        if bad:
            raise RuntimeError(f"{ckpt}: adapter weights do not fit the model: {bad[:5]}")
        return
    files = sorted(ckpt.glob("model*.safetensors"))
    sd: dict[str, torch.Tensor] = {}
    for f in files:
        sd.update(load_file(str(f)))
    missing, unexpected = lm.load_state_dict(sd, strict=False)
    tied = {"lm_head.weight"} if getattr(lm.config, "tie_word_embeddings", False) else set()
    missing = [k for k in missing if k not in tied]
    if missing or unexpected:
        raise RuntimeError(f"{ckpt}: weights do not fit the model: missing {missing[:5]}, unexpected {unexpected[:5]}")


def read_state(ckpt: Path) -> dict[str, Any]:
    return json.loads((ckpt / STATE_FILE).read_text())


def load_checkpoint(accelerator: Any, ckpt: Path, *, wrapper: Any, optimizer: Any, scheduler: Any) -> dict[str, Any]:
    """Restore everything saved by :func:`save_checkpoint`; returns the trainer state."""
    state = read_state(ckpt)
    if _sharded(accelerator):
        accelerator.load_state(str(ckpt / "accelerate_state"))
    else:
        load_weights(accelerator.unwrap_model(wrapper).lm, ckpt)
        optimizer.load_state_dict(torch.load(ckpt / "optimizer.pt", map_location="cpu", weights_only=False))
    scheduler.load_state_dict(torch.load(ckpt / "scheduler.pt", weights_only=False))
    rng = ckpt / f"rng_state_{accelerator.process_index}.pt"
    if not rng.is_file():
        # without it this rank's dropout/sampling stream restarts: not the same run
        from instructkit.errors import ConfigError
        raise ConfigError(f"cannot resume from {ckpt}: {rng.name} is missing (the checkpoint was written by a "
                          f"run with fewer processes, or is incomplete)")
    set_rng_state(torch.load(rng, weights_only=False))
    scaler = getattr(accelerator, "scaler", None)
    if scaler is not None and (ckpt / "scaler.pt").is_file():  # fp16 loss scale
        scaler.load_state_dict(torch.load(ckpt / "scaler.pt", weights_only=False))
    return state


def resolve_resume(resume: str | None, run_dir: Path) -> Path | None:
    """``auto`` -> latest complete checkpoint of the run (or None: fresh start); a path must exist."""
    if not resume:
        return None
    if resume == "auto":
        found = list_checkpoints(run_dir)
        if not found:
            import logging
            logging.getLogger("instructkit.train").warning(
                "resume: no checkpoint in %s, starting fresh", run_dir)
        return found[-1] if found else None
    p = Path(resume)
    if not (p / STATE_FILE).is_file():
        from instructkit.errors import ConfigError
        raise ConfigError(f"train.resume={resume}: not a checkpoint folder (no {STATE_FILE})")
    return p
