"""Checkpoints that resume exactly: weights, optimizer, scheduler, RNG states, data position, metrics.

Layout of ``RUN/checkpoint-<step>/``::

    model.safetensors + config.json            full fine-tuning (HF folder, loadable as is; not under FSDP,
                                               where accelerate_state/ holds the weights sharded per rank)
    adapter_model.safetensors + adapter_config.json   LoRA/DoRA/QLoRA (adapter only)
    tokenizer files
    optimizer.pt, scheduler.pt                 (FSDP/DeepSpeed: accelerate_state/ from accelerator.save_state:
                                               weights and optimizer state, one shard per rank)
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
OBJECTIVE_FILE = "objective_state.pt"
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


def _adapter_state(lm: Any) -> dict[str, torch.Tensor]:
    """The trainable (adapter) tensors, whole: an FSDP2 shard is gathered parameter by parameter (all ranks
    call, in the same order) - the frozen base is never gathered."""
    sd = {}
    for name, p in lm.named_parameters():
        if p.requires_grad:
            t = p.detach()
            t = t.full_tensor() if hasattr(t, "full_tensor") else t
            sd[name] = t.cpu()
    return sd


def _as_loaded(sd: dict[str, torch.Tensor], lm: Any) -> dict[str, torch.Tensor]:
    """Final weights in the dtype the model was loaded in: mixed precision trains fp32 master copies of a
    bf16 model; the exported folder is bf16 again (step checkpoints keep fp32, so a resume is exact)."""
    want = getattr(lm, "loaded_dtype", None)  # set by train.distributed.upcast_trainable
    if not isinstance(want, torch.dtype) or want == torch.float32:
        return sd
    return {k: v.to(want) if v.is_floating_point() and v.dtype == torch.float32 else v for k, v in sd.items()}


def save_weights(accelerator: Any, wrapper: Any, tokenizer: Any, out: Path, *, final: bool = True) -> None:
    """HF folder (full) or adapter folder (peft); all ranks call (FSDP/DeepSpeed gather here).

    Under FSDP an adapter is gathered alone (no full-model gather for LoRA), and a step checkpoint
    (``final=False``) of full weights writes none here: its ``accelerate_state`` holds them, sharded."""
    from instructkit.train.distributed import kind

    lm = accelerator.unwrap_model(wrapper).lm
    fsdp = kind(accelerator) == "FSDP"
    if fsdp and hasattr(lm, "peft_config"):
        sd = _adapter_state(lm)
    elif fsdp and not final:
        sd = None
    else:
        state = accelerator.get_state_dict(wrapper) or {}  # ZeRO-3 gathers onto rank 0; the others get None
        sd = {k[len("lm."):]: v for k, v in state.items() if k.startswith("lm.")}
        if final and not hasattr(lm, "peft_config"):
            sd = _as_loaded(sd, lm)
    if accelerator.is_main_process:
        if sd is not None:
            lm.save_pretrained(out, state_dict=sd, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(out)
        from instructkit.outputs import readable_modes
        readable_modes(out)  # save_pretrained writes the weights 0600


def _write_cause(e: BaseException, folder: Path) -> str:
    """Why a write failed, in a few words: the OS cause, or - for errors that hide it (torch's
    ``RuntimeError: [enforce fail at inline_container.cc:...]``, tokenizers' plain ``Exception: No space left
    on device``) - a full disk when the disk is (nearly) full, else the exception's last line."""
    from instructkit.outputs import write_error

    if isinstance(e, OSError):
        return str(write_error(folder, e)).split(": cannot write: ", 1)[1]
    try:
        if shutil.disk_usage(folder if folder.exists() else folder.parent).free < 64 * 2**20:
            return "no space left on device"
    except OSError:
        pass
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[-1] if lines else ''}".rstrip(": ")


@contextmanager
def cleaned_on_failure(accelerator: Any, tmp: Path, final: Path) -> Iterator[None]:
    """Writes into ``tmp`` that fail (disk full, permission lost, a second Ctrl-C) remove ``tmp``; ANY
    exception while writing (torch and tokenizers report a full disk as RuntimeError / a plain Exception,
    not OSError) becomes one line naming ``final``, the cause and the last good checkpoint (which is kept).
    KeyboardInterrupt / SystemExit pass through unchanged."""
    from instructkit.errors import InstructkitError

    try:
        yield
    except BaseException as e:
        if accelerator.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(e, Exception) and not isinstance(e, InstructkitError):
            good = [p for p in list_checkpoints(final.parent) if p != final]
            kept = f"; the last good checkpoint {good[-1]} is kept" if good else ""
            raise InstructkitError(f"{final}: cannot write: {_write_cause(e, final.parent)}{kept}") from None
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
        save_weights(accelerator, wrapper, tokenizer, tmp, final=False)
        if _sharded(accelerator):
            accelerator.save_state(str(tmp / "accelerate_state"))
        elif accelerator.is_main_process:
            torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        torch.save(rng_state(), tmp / f"rng_state_{accelerator.process_index}.pt")
        extra = getattr(accelerator.unwrap_model(wrapper), "objective_state_dict", None)
        if extra is not None and accelerator.is_main_process and not _sharded(accelerator):
            torch.save(extra(), tmp / OBJECTIVE_FILE)  # e.g. PPO's value head (not part of the LM's weights)
        if accelerator.is_main_process:
            torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
            if getattr(accelerator, "scaler", None) is not None:  # fp16 GradScaler: the loss scale is state
                torch.save(accelerator.scaler.state_dict(), tmp / "scaler.pt")
            (tmp / STATE_FILE).write_text(json.dumps(state, indent=1))
            prev = list_checkpoints(run_dir)
            if prev:
                link_unchanged(tmp, prev[-1])
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    accelerator.wait_for_everyone()
    return final


#: files never worth comparing (they change at every step, or are large): weights, optimizer, RNG, state
_ALWAYS_NEW = (".safetensors", ".pt", ".bin", STATE_FILE)


def link_unchanged(new: Path, previous: Path) -> int:
    """Replace each file of ``new`` that is byte-identical to the same file of ``previous`` by a hard link
    to it (the tokenizer: 3.5 MB per LoRA checkpoint otherwise). Pruning one checkpoint leaves the other's
    link intact. Returns how many files were linked; a filesystem without hard links keeps the copies."""
    import filecmp

    n = 0
    for f in new.iterdir():
        old = previous / f.name
        if (f.is_file() and not f.name.endswith(_ALWAYS_NEW) and old.is_file() and not old.is_symlink()
                and filecmp.cmp(f, old, shallow=False)):
            link = f.with_name(f".link-{f.name}")
            try:
                os.link(old, link)
                os.replace(link, f)
                n += 1
            except OSError:
                link.unlink(missing_ok=True)
    return n


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
        load_extra = getattr(accelerator.unwrap_model(wrapper), "load_objective_state_dict", None)
        if load_extra is not None and (ckpt / OBJECTIVE_FILE).is_file():
            load_extra(torch.load(ckpt / OBJECTIVE_FILE, map_location="cpu", weights_only=False))
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
