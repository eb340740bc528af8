"""The DPO reference: its log-probs are computed once, before training, and cached on disk.

So no second model is held in memory during training and no reference forward runs in the loop: every
row carries its pairs' reference sums (see ``batches.attach_reference``). With LoRA/DoRA/QLoRA the
reference is the base model with the adapter disabled; with full fine-tuning it is the model as loaded,
before the first step (a resumed run finds the cache computed from those same initial weights).

Cache file: ``<cache_dir>/refcache/<key>.pt`` holding a ``[pairs, 2]`` float32 tensor (chosen, rejected)
and the key's parts. The key hashes the data fingerprint (token ids and masks of every pair: data,
tokenizer, template and max length), the model (name plus a sha256 of its weights' bytes), the template
source, the max length and the dtype: a changed template or model (any bit of it) invalidates it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Sequence

import torch

from instructkit.train.preference.batches import collate_pairs, sequence_logprobs

log = logging.getLogger("instructkit.train")
#: reference forward passes run by this process (tests assert the training loop adds none)
FORWARDS = 0


def default_cache_dir() -> Path:
    from instructkit.models import cache_dir
    return cache_dir() / "refcache"


def tensor_bytes(t: torch.Tensor) -> memoryview:
    """The raw bytes of a tensor (any dtype, bf16 and 4-bit storage included), without a float copy."""
    t = t.detach()
    if t.device.type != "cpu":
        t = t.cpu()
    return memoryview(t.contiguous().reshape(-1).view(torch.uint8).numpy())


def weights_digest(lm: Any, gather: Any = None) -> str:
    """sha256 over every base weight's name, shape, dtype and bytes, streamed tensor by tensor (adapter
    weights excluded: the reference ignores them). Any changed bit changes it; a digest of sums would not
    see two swapped rows or a change below its printed precision. ~1 s per GB of weights. Tensors without
    storage (``meta``) hash their name, shape and dtype only.

    FSDP2 shards (DTensor): each rank hashes its own shard and ``gather`` (accelerate's ``gather_object``)
    joins the per-rank digests in rank order, so every rank gets the same key without a full gather."""
    h = hashlib.sha256()
    sharded = False
    with torch.no_grad():
        for name, p in lm.named_parameters():
            if "lora_" in name or "modules_to_save" in name:
                continue
            x = p.detach()
            if hasattr(x, "to_local"):  # an FSDP2 shard
                x, sharded = x.to_local(), True
            h.update(f"{name}:{tuple(p.shape)}:{p.dtype}|".encode())
            if x.device.type != "meta" and x.numel():
                h.update(tensor_bytes(x))
    digest = h.hexdigest()
    if sharded and gather is not None:
        digest = hashlib.sha256("|".join(gather([digest])).encode()).hexdigest()
    return digest[:16]
    return h.hexdigest()[:16]


def cache_key(*, data_fingerprint: str, model_name: str, weights: str, template_source: str, max_length: int | None,
              dtype: str, mixed_precision: str) -> dict[str, Any]:
    """``mixed_precision``: the autocast the reference ran under (accelerate's ``no`` / ``bf16`` / ``fp16``)."""
    return {"data": data_fingerprint, "model": model_name, "weights": weights,
            "template": hashlib.sha256(template_source.encode()).hexdigest()[:16], "max_length": max_length,
            "dtype": dtype, "autocast": mixed_precision}


def _digest(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]


def _adapter_off(lm: Any) -> Any:
    return lm.disable_adapter() if hasattr(lm, "disable_adapter") else contextlib.nullcontext()


@torch.no_grad()
def compute_reference(lm: Any, rows: Sequence[dict[str, torch.Tensor]], n_pairs: int, device: Any,
                      chunk: int = 4096, progress: bool = False, extra: Sequence[dict[str, torch.Tensor]] = ()
                      ) -> torch.Tensor:
    """``[n_pairs, 2]`` reference sums of ``rows`` (zeros for pairs not in them), one forward per row on
    ``device``, adapter disabled, eval mode. ``extra`` rows run forwards whose results are dropped (so every
    FSDP rank runs as many forwards as the others)."""
    global FORWARDS
    from tqdm.auto import tqdm

    out = torch.zeros(n_pairs, 2, device=device)
    was_training = lm.training
    lm.eval()
    try:
        with _adapter_off(lm):
            for i, r in enumerate(tqdm([*rows, *extra], desc="reference log-probs", disable=not progress,
                                       unit="row")):
                batch = collate_pairs([r])
                batch = {k: v.to(device) for k, v in batch.items()}
                sums, _ = sequence_logprobs(lm, batch, chunk)
                FORWARDS += 1
                if i < len(rows):  # stays on the device: one copy to the host at the end
                    out[r["pair_ids"].to(device)] = sums.float().view(-1, 2)
    finally:
        lm.train(was_training)
    return out


def sharded_reference(accelerator: Any, wrapper: Any, rows: Sequence[dict[str, torch.Tensor]], n_pairs: int,
                      chunk: int = 4096, progress: bool = False) -> torch.Tensor:
    """Every rank computes the reference of rows ``rank::world`` on its device with the model as it trains
    (FSDP: inside the sharded forward, each rank the same number of forwards); one sum-reduce joins them."""
    from instructkit.train.distributed import kind, run_on_model

    rank, world = accelerator.process_index, accelerator.num_processes
    mine = list(rows[rank::world])
    pad = -(-len(rows) // world) - len(mine) if kind(accelerator) == "FSDP" else 0
    # Under mixed precision the policy's forward runs in the accelerator's autocast; the reference must too.
    # Outside it, the fp32 master weights give fp32 log-probs, and at step 0 every reward is the bf16-vs-fp32
    # difference of its sequence's log-prob sum instead of 0 (a loss of 0.6997 instead of ln 2, measured).
    with accelerator.autocast():
        ref = run_on_model(accelerator, wrapper, lambda lm: compute_reference(
            lm, mine, n_pairs, accelerator.device, chunk, progress, extra=[rows[0]] * pad))
    if world > 1:
        ref = accelerator.reduce(ref, "sum")  # each pair was computed by exactly one rank
    return ref.cpu()


def reference_logprobs(wrapper: Any, rows: Sequence[dict[str, torch.Tensor]], n_pairs: int, key: dict[str, Any], *,
                       accelerator: Any, cache_dir: str | Path | None = None, chunk: int = 4096,
                       progress: bool = False) -> tuple[torch.Tensor, dict[str, Any]]:
    """Load the cached reference sums for ``key`` or compute them on all ranks (:func:`sharded_reference`)
    and store them (main process). ``wrapper``: the prepared training wrapper (its ``.lm``)."""
    from accelerate.utils import broadcast_object_list

    path = Path(cache_dir or default_cache_dir()) / f"{_digest(key)}.pt"
    info = {"path": str(path), "key": key}
    found = [path.is_file()]
    if accelerator.num_processes > 1:  # rank 0 decides: every rank takes the same branch
        broadcast_object_list(found, from_process=0)
    if not found[0]:
        ref = sharded_reference(accelerator, wrapper, rows, n_pairs, chunk, progress)
        if accelerator.is_main_process:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            torch.save({"key": key, "ref": ref}, tmp)
            os.replace(tmp, path)  # atomic: a killed run never leaves a half cache
            log.info("reference log-probs: computed for %d pairs on %d process(es) -> %s", n_pairs,
                     accelerator.num_processes, path)
        accelerator.wait_for_everyone()
        return ref, {**info, "cached": False}
    accelerator.wait_for_everyone()
    saved = torch.load(path, weights_only=False)
    if saved["key"] != key or saved["ref"].shape != (n_pairs, 2):
        raise RuntimeError(f"{path}: reference cache does not match its key (delete the file)")
    log.info("reference log-probs: cache hit %s", path)
    return saved["ref"], {**info, "cached": True}
