"""Model builders for the training methods: full, LoRA, DoRA, QLoRA (a dict of choices, no if-chains).

Builders take plain arguments; :func:`build_model` is where the config objects stop.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any, Callable

from instructkit.errors import ConfigError


@dataclass
class AdapterSpec:
    r: int
    alpha: float
    dropout: float
    target_modules: list[str]


def unmatched_targets(model: Any, targets: list[str]) -> list[str]:
    """Targets that name no module (peft's list rule: the full name equals it or ends with ``.name``)."""
    if targets == ["all-linear"]:
        return []
    names = [n for n, _ in model.named_modules()]
    return [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]


def check_targets(model: Any, targets: list[str]) -> None:
    missing = unmatched_targets(model, targets)
    if missing:
        import torch
        linear = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules()
                         if isinstance(m, torch.nn.Linear) or type(m).__name__.startswith("Linear")})
        raise ConfigError(f"train.lora.target_modules: {missing} match no module of the model; "
                          f"linear layers it has: {linear}")


def _lora(model: Any, spec: AdapterSpec, use_dora: bool) -> Any:
    from peft import LoraConfig, get_peft_model

    check_targets(model, spec.target_modules)
    target = "all-linear" if spec.target_modules == ["all-linear"] else list(spec.target_modules)
    cfg = LoraConfig(r=spec.r, lora_alpha=spec.alpha, lora_dropout=spec.dropout, target_modules=target,
                     use_dora=use_dora, bias="none", task_type="CAUSAL_LM")
    return get_peft_model(model, cfg)  # peft's FutureWarnings on transformers' aliases: see instructkit/__init__


def apply_full(model: Any, spec: AdapterSpec, gc: bool) -> Any:
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def apply_lora(model: Any, spec: AdapterSpec, gc: bool) -> Any:
    return _lora(model, spec, use_dora=False)


def apply_dora(model: Any, spec: AdapterSpec, gc: bool) -> Any:
    return _lora(model, spec, use_dora=True)


def apply_qlora(model: Any, spec: AdapterSpec, gc: bool) -> Any:
    from peft import prepare_model_for_kbit_training

    if not getattr(model, "is_loaded_in_4bit", False):
        raise ConfigError("train.method=qlora needs a model loaded in 4 bit (let the trainer load it from "
                          "model.name_or_path, or pass a model loaded with a BitsAndBytesConfig)")
    # casts norms to fp32, freezes the base, enables checkpointing (non-reentrant) when asked
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=gc,
                                            gradient_checkpointing_kwargs={"use_reentrant": False})
    return _lora(model, spec, use_dora=False)


METHODS: dict[str, Callable[[Any, AdapterSpec, bool], Any]] = {
    "full": apply_full, "lora": apply_lora, "dora": apply_dora, "qlora": apply_qlora,
}


def nf4_config(dtype: str) -> Any:
    """QLoRA's quantization: 4-bit NormalFloat, double quantization, compute in the model dtype."""
    import torch
    from transformers import BitsAndBytesConfig

    if importlib.util.find_spec("bitsandbytes") is None:
        raise ConfigError("train.method=qlora needs bitsandbytes: pip install 'instructkit[qlora]'")
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=getattr(torch, dtype), bnb_4bit_quant_storage=torch.uint8)


def check_attention(attn: str, device_type: str) -> None:
    if attn.startswith("flash_attention"):
        if device_type != "cuda":
            raise ConfigError(f"model.attn_implementation={attn} needs a CUDA GPU; use sdpa on {device_type}")
        pkg = "flash_attn" if attn == "flash_attention_2" else "flash_attn_interface"
        if importlib.util.find_spec(pkg) is None:
            raise ConfigError(f"model.attn_implementation={attn} needs the {pkg} package; use sdpa")


def enable_checkpointing(model: Any) -> None:
    """Non-reentrant activation checkpointing (transformers v5 renamed gradient_checkpointing_enable)."""
    kw = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kw)
    else:  # transformers 4.x
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kw)


def build_model(name_or_path: str, *, method: str, dtype: str, attn_implementation: str, spec: AdapterSpec,
                gradient_checkpointing: bool, model: Any = None, device_type: str = "cpu", device_map: Any = None,
                on_meta: bool = False, master_fp32: bool = False, packed: bool = False) -> Any:
    """Load (unless given) and prepare the model for ``method``; returns the trainable model.

    ``device_map``: where the weights load (``{"": gpu_index}``: straight onto this process's GPU).
    ``on_meta``: build the architecture on the meta device, reading no weights (FSDP ranks >= 1 with
    cpu_ram_efficient_loading: rank 0's weights are broadcast at prepare). ``master_fp32``: trainable
    parameters kept fp32 while the compute dtype is half (mixed precision; train/distributed.py). ``packed``:
    the rows are packed, so an ``sdpa`` model attends per example (models/attention.py: no T x T mask)."""
    from instructkit.models import load_model

    from instructkit.models.dtype import resolve_dtype

    check_attention(attn_implementation, device_type)
    dtype, _ = resolve_dtype(dtype, device_type)
    check_flash_dtype(attn_implementation, dtype)
    if model is None:
        quant = nf4_config(dtype) if method == "qlora" else None
        if quant is not None and device_type == "cuda" and device_map is None:
            device_map = {"": device_type}
        if on_meta:
            model = meta_model(name_or_path, dtype=dtype, attn_implementation=attn_implementation)
        else:
            model = load_model(name_or_path, dtype=dtype, attn_implementation=attn_implementation,
                               quantization=quant, device_map=device_map)
    if packed:
        from instructkit.models.attention import use_packed_attention
        use_packed_attention(model)
    if method != "qlora" and gradient_checkpointing:
        enable_checkpointing(model)
    model = METHODS[method](model, spec, gradient_checkpointing)
    if master_fp32:
        from instructkit.train.distributed import upcast_trainable
        upcast_trainable(model)
    model.config.use_cache = False
    model.train()
    return model


def check_flash_dtype(attn: str, dtype: str) -> None:
    """flash-attention kernels exist for bf16/fp16 only: an fp32 model would fail in the first forward."""
    if attn.startswith("flash_attention") and dtype not in ("bfloat16", "float16"):
        raise ConfigError(f"model.attn_implementation={attn} computes in bfloat16/float16 only; model.dtype is "
                          f"{dtype}: set model.dtype to bfloat16 (or auto) or use sdpa")


def meta_model(name_or_path: str, *, dtype: str, attn_implementation: str | None) -> Any:
    """The architecture of ``name_or_path`` with every tensor on the meta device (no weights read)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from instructkit.models import resolve_model

    from instructkit.models.dtype import resolve_dtype

    dtype, _ = resolve_dtype(dtype, "cuda" if torch.cuda.is_available() else "cpu")
    cfg = AutoConfig.from_pretrained(resolve_model(name_or_path))
    kw = {"attn_implementation": attn_implementation} if attn_implementation else {}
    # parameters on meta, buffers real: non-persistent buffers (rotary inv_freq) are not broadcast by
    # FSDP2's loading, each rank keeps its own
    from accelerate import init_empty_weights

    with init_empty_weights(include_buffers=False):
        model = AutoModelForCausalLM.from_config(cfg, dtype=getattr(torch, dtype), **kw)
    model.tie_weights()  # init_empty_weights re-registers the tied head as its own meta tensor
    return model


def param_counts(model: Any) -> tuple[int, int]:
    """(trainable, total) parameters; 4-bit weights count as their logical size (2 values per byte)."""
    trainable = total = 0
    for p in model.parameters():
        # ZeRO-3 loads partitioned: the parameter is an empty placeholder and ds_numel its real size
        n = getattr(p, "ds_numel", p.numel()) * (2 if p.dtype.itemsize == 1 and not p.is_floating_point() else 1)
        total += n
        if p.requires_grad:
            trainable += n
    return trainable, total
