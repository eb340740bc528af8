"""The Accelerator of a run and what the sharded set-ups need from it (DDP, FSDP2, DeepSpeed; CPU or GPU).

* **precision**: ``model.dtype`` is the compute dtype. bf16/fp16 runs train in mixed precision: trainable
  weights and their AdamW state stay fp32 (master weights), matmuls run in the compute dtype under
  autocast, fp16 gets loss scaling (accelerate's GradScaler). Pure-bf16 AdamW rounds most updates of a
  lr 2e-5 step to zero (a bf16 weight of magnitude ~1 has a step of 2**-8). Frozen weights (LoRA/QLoRA
  base) stay in the compute dtype.
* **FSDP on CPU**: accelerate only turns FSDP on for accelerator devices; torch's ``fully_shard`` runs on
  gloo too, so a run launched with an FSDP config on a machine without GPUs gets the same FSDP2 path
  (this is how the 2-process tests prove sharding, saving and resuming on CPU).
* **DeepSpeed on CPU**: accelerate ignores a DeepSpeed launch on a machine without GPUs; the run keeps it
  by naming gloo as the backend (``_cpu_args``), and DeepSpeed runs ZeRO on its CPU accelerator.
* **wrap class**: FSDP wraps the classes the model names in ``_no_split_modules`` (Llama, Qwen2, Mistral,
  ... decoder layers); a class named in the accelerate config that the model lacks is replaced by those.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Callable

from instructkit.errors import ConfigError

log = logging.getLogger("instructkit.train")

#: compute dtype -> accelerate mixed_precision (trainable weights kept fp32); fp16 autocast needs a GPU
MIXED = {"bfloat16": "bf16", "float16": "fp16"}


def mixed_precision_for(compute_dtype: str, device_type: str) -> str:
    if compute_dtype == "float16" and device_type != "cuda":
        return "no"  # fp16 autocast + loss scaling is a GPU feature; CPU runs what was asked, as is
    return MIXED.get(compute_dtype, "no")


def _flag(name: str) -> bool:
    return os.environ.get(name, "false").lower() in ("1", "true", "yes")


def enable_cpu_fsdp(accelerator: Any) -> None:
    """Switch a gloo (MULTI_CPU) run launched with an FSDP config to accelerate's FSDP path."""
    from accelerate.state import PartialState
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    plugin = FullyShardedDataParallelPlugin()  # reads the FSDP_* variables accelerate launch exported
    # both shared states: AcceleratorState re-reads PartialState's distributed_type when re-instantiated
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP
    accelerator.state.distributed_type = DistributedType.FSDP
    accelerator.state.fsdp_plugin = plugin
    if accelerator.mixed_precision != "no":
        plugin.set_mixed_precision(accelerator.mixed_precision)


def fsdp_plugin(accelerator: Any) -> Any:
    return getattr(accelerator.state, "fsdp_plugin", None) if kind(accelerator) == "FSDP" else None


def kind(accelerator: Any) -> str:
    """``NO``, ``MULTI_CPU``, ``MULTI_GPU``, ``FSDP``, ``DEEPSPEED``..."""
    return str(accelerator.distributed_type).split(".")[-1]


def make_accelerator(*, grad_accum: int, compute_dtype: str, max_grad_norm: float, method: str) -> Any:
    """The run's Accelerator: gloo on a GPU-less multi-process launch, FSDP there too when the launch asked
    for it, mixed precision from the compute dtype, and the sharded set-ups checked before any model loads."""
    import torch
    from accelerate import Accelerator

    # torchrun/accelerate launch on a machine without GPUs: accelerate only goes multi-process (gloo) when
    # told cpu=True
    cpu_dist = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not torch.cuda.is_available()
    device_type = "cuda" if torch.cuda.is_available() else "cpu"
    mixed = mixed_precision_for(compute_dtype, device_type)
    _allow_new_precision(mixed)
    acc = Accelerator(gradient_accumulation_steps=grad_accum, mixed_precision=mixed, **_cpu_args(cpu_dist))
    if kind(acc) == "MULTI_CPU" and _flag("ACCELERATE_USE_FSDP"):
        enable_cpu_fsdp(acc)
    check_setup(acc, method=method, max_grad_norm=max_grad_norm)
    from instructkit.models.dtype import enable_tf32
    enable_tf32()
    return acc


def _cpu_args(cpu_dist: bool) -> dict[str, Any]:
    """Accelerator arguments of a multi-process launch without GPUs: gloo, and DeepSpeed when launched with a
    DeepSpeed config. The trap: accelerate drops DeepSpeed whenever ``cpu=True`` (the run silently became
    plain DDP), and with ``cpu=False`` it finds no device backend, so every rank believes it is rank 0 of 1.
    Naming the backend (gloo) keeps ``cpu=False``: DeepSpeed initialises the process group on gloo (its CPU
    accelerator uses oneCCL only when oneccl_bindings_for_pytorch is installed), accelerate reads rank and
    world size from it, and the device is the CPU."""
    if not cpu_dist:
        return {"cpu": False}
    if not _flag("ACCELERATE_USE_DEEPSPEED"):
        return {"cpu": True}
    from accelerate.utils import InitProcessGroupKwargs

    return {"cpu": False, "kwargs_handlers": [InitProcessGroupKwargs(backend="gloo")]}


def _allow_new_precision(mixed: str) -> None:
    """accelerate's state is a per-process singleton that refuses another mixed_precision; a single process
    that trains several models in turn (a notebook, the test suite) gets a fresh one. Never under a
    launcher: there the state is the process group's."""
    from accelerate.state import AcceleratorState

    st = AcceleratorState._shared_state
    if st and st.get("_mixed_precision", mixed) != mixed and int(os.environ.get("WORLD_SIZE", "1")) == 1:
        AcceleratorState._reset_state()


def check_setup(accelerator: Any, *, method: str, max_grad_norm: float) -> None:
    """Refuse the set-ups that cannot work, before a model loads; hand the loop's clipping to DeepSpeed."""
    plugin = fsdp_plugin(accelerator)
    if plugin is not None:
        if plugin.fsdp_version != 2 and method in ("lora", "dora", "qlora"):
            # peft keeps adapters fp32 on a bf16/fp16 base; FSDP1 flattens a unit's parameters into one
            # tensor and refuses mixed dtypes. FSDP2 shards per parameter.
            raise ConfigError(f"train.method={method} under FSDP needs fsdp_version: 2 in the accelerate config "
                              "(FSDP1 cannot hold fp32 adapters and a bf16 base in one flat parameter); use "
                              "configs/accelerate/fsdp.yaml")
        if method == "qlora":
            raise ConfigError("train.method=qlora under FSDP is not supported (4-bit weights in uint8 storage "
                              "cannot be sharded, and QLoRA places the model with a device_map); run QLoRA with "
                              "DDP (configs/accelerate/ddp.yaml) or on one GPU")
    ds = getattr(accelerator.state, "deepspeed_plugin", None) if kind(accelerator) == "DEEPSPEED" else None
    if ds is not None:
        cfg = ds.deepspeed_config
        if cfg.get("zero_optimization", {}).get("stage") == 3 and not ds.zero3_save_16bit_model:
            raise ConfigError("DeepSpeed ZeRO-3 saves the final model only with zero3_save_16bit_model: true in "
                              "the accelerate config's deepspeed_config")
        clip = cfg.get("gradient_clipping", "auto")
        if clip not in ("auto", None) and float(clip) != float(max_grad_norm):
            log.warning("notice: the DeepSpeed config's gradient_clipping=%s is replaced by train.max_grad_norm=%s",
                        clip, max_grad_norm)
        # DeepSpeed clips inside its step once it owns the optimizer: it must clip by the recipe's norm
        cfg["gradient_clipping"] = float(max_grad_norm)


def meta_rank(accelerator: Any) -> bool:
    """This rank builds the model on the meta device: FSDP with cpu_ram_efficient_loading, not rank 0
    (rank 0 reads the weights; accelerate broadcasts them shard by shard at prepare)."""
    plugin = fsdp_plugin(accelerator)
    return bool(plugin is not None and plugin.cpu_ram_efficient_loading and not accelerator.is_main_process)


def load_device_map(accelerator: Any) -> Any:
    """Where the weights go at load: the process's own GPU, so nothing runs on CPU copies (the probe, the
    DPO reference) and 8 ranks do not each hold the model in host RAM. FSDP and DeepSpeed place the
    weights themselves at prepare (None: CPU, or meta on ranks >= 1)."""
    if accelerator.device.type != "cuda" or kind(accelerator) in ("FSDP", "DEEPSPEED"):
        return None
    return {"": accelerator.local_process_index}


def wrap_classes(model: Any) -> list[str]:
    """The decoder-layer classes FSDP should wrap: the model's ``_no_split_modules`` that it instantiates."""
    names = list(getattr(model, "_no_split_modules", None) or [])
    present = {type(m).__name__ for m in model.modules()}
    found = [n for n in names if n in present]
    if not found:
        raise ConfigError(f"FSDP: cannot tell which layers of {type(model).__name__} to wrap (its "
                          f"_no_split_modules {names} name none of its modules); set "
                          "fsdp_transformer_layer_cls_to_wrap in the accelerate config")
    return found


def set_wrap_classes(accelerator: Any, model: Any) -> None:
    """Before prepare: FSDP wraps the model's own decoder layers (a name the config gives that the model
    lacks, such as LlamaDecoderLayer for Qwen2, is replaced with a notice instead of a crash)."""
    from torch.distributed.fsdp.wrap import transformer_auto_wrap_policy

    plugin = fsdp_plugin(accelerator)
    if plugin is None or plugin.auto_wrap_policy is not transformer_auto_wrap_policy:
        return
    derived = wrap_classes(model)
    given = plugin.transformer_cls_names_to_wrap
    present = {type(m).__name__ for m in model.modules()}
    if given and all(n in present for n in given):
        return
    if given:
        log.warning("notice: FSDP wrap class %s is not in %s; wrapping %s (its _no_split_modules)", given,
                    type(model).__name__, derived)
    plugin.transformer_cls_names_to_wrap = derived


def upcast_trainable(model: Any) -> int:
    """fp32 master weights: trainable half-precision parameters become fp32 (autocast computes in half).
    Returns how many were upcast."""
    import torch

    half = [p for p in model.parameters() if p.requires_grad and p.is_floating_point() and p.dtype != torch.float32]
    if half:
        model.loaded_dtype = half[0].dtype  # the final export goes back to it (train.checkpoint)
    for p in half:
        p.data = p.data.float()
    return len(half)


def prepare_model(accelerator: Any, wrapper: Any) -> Any:
    """DDP/FSDP-wrap the loss wrapper before anything runs on it (probe, DPO reference); the optimizer is
    built afterwards from the prepared parameters. DeepSpeed takes model and optimizer in one prepare (the
    loop's), so here its model only goes to its device."""
    if kind(accelerator) == "DEEPSPEED":
        return wrapper.to(accelerator.device)
    set_wrap_classes(accelerator, wrapper.lm)
    if hasattr(wrapper.lm, "tie_weights") and not hasattr(wrapper, "tie_weights"):
        # FSDP2's cpu_ram_efficient_loading moves the model to meta and re-ties through model.tie_weights():
        # without it a tied LM head (SmolLM2) would come back as a second, separately trained matrix
        wrapper.tie_weights = wrapper.lm.tie_weights
    return accelerator.prepare(wrapper)


def run_on_model(accelerator: Any, wrapper: Any, fn: Any) -> Any:
    """``fn(lm)`` on the model as it trains. Under FSDP inside the root module's forward, so every rank
    gathers the shards it needs (all ranks must call, with the same number of forwards); elsewhere on the
    unwrapped module (no DDP hooks)."""
    module = accelerator.unwrap_model(wrapper)  # keep_fp32_wrapper=False would strip autocast for good
    if kind(accelerator) != "FSDP":
        with _zero3_gathered(module):
            return fn(module.lm)
    root = wrapper
    saved = root.__dict__.get("forward")
    root.forward = lambda *a, **k: fn(module.lm)
    try:
        return root()
    finally:
        if saved is None:
            del root.forward
        else:
            root.forward = saved
        _reshard(root)


def _zero3_gathered(module: Any) -> Any:
    """Whole weights for a forward outside DeepSpeed's engine (the start-up probe, the DPO reference), ZeRO-3
    only. The trap: under ZeRO-3, accelerate registers its DeepSpeed config with transformers, whose
    ``from_pretrained`` then loads the model already partitioned (``deepspeed.zero.Init``, whatever
    ``zero3_init_flag`` says): every weight is an empty placeholder until DeepSpeed's hooks gather it, and those
    hooks only exist once the loop's prepare has built the engine. Gathering here holds the whole model on
    every rank for the duration of the call (all ranks must call)."""
    import contextlib

    params = [p for p in module.parameters() if hasattr(p, "ds_id")]  # DeepSpeed marks partitioned parameters
    if not params:
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(params, modifier_rank=None)


def run_eval_fn(accelerator: Any, model: Any, eval_fn: Callable) -> dict[str, float]:
    """``eval_fn(lm)``: on a sharded (FSDP) model every rank runs it inside the root forward (the shards are
    gathered per layer; every rank sees the same numbers); otherwise the main process runs it once on the
    unwrapped model and the others receive its scores instead of repeating the whole evaluation."""
    from accelerate.utils import broadcast_object_list

    if kind(accelerator) == "FSDP":
        return dict(run_on_model(accelerator, model, eval_fn))
    found = [dict(eval_fn(accelerator.unwrap_model(model).lm)) if accelerator.is_main_process else None]
    if accelerator.num_processes > 1:
        broadcast_object_list(found, from_process=0)
    return found[0]


def _reshard(model: Any) -> None:
    """Back to sharded parameters: FSDP2 leaves the root's parameters unsharded after a forward (the root
    does not reshard), so ``model.parameters()`` would hand an optimizer built now plain tensors instead of
    the DTensor shards (full fine-tuning: embeddings, final norm and head live in the root)."""
    from torch.distributed.fsdp import FSDPModule

    for m in model.modules():
        if isinstance(m, FSDPModule):
            m.reshard()


def clip_grad_norm(accelerator: Any, params: list, max_norm: float) -> Any:
    """Clip by the global norm. FSDP2: torch's clip over the DTensor gradients reduces the norm over all
    shards (accelerate's hand-over compares parameter lists with ``==``, which DTensors refuse)."""
    import torch

    if kind(accelerator) == "FSDP" and getattr(accelerator, "is_fsdp2", False):
        accelerator.unscale_gradients()
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        return norm.full_tensor() if hasattr(norm, "full_tensor") else norm
    return accelerator.clip_grad_norm_(params, max_norm)
