"""The GPU set-ups, proven on CPU: precision choice per device capability, fp32 master weights under bf16,
FSDP wrap classes per architecture, flash-attention dtype, the DeepSpeed clipping hand-over, QLoRA probe
tolerance, placement at load, the probe after prepare and the DPO reference split across ranks."""

from __future__ import annotations

import types

import pytest
import torch

from instructkit.config.base import load_config
from instructkit.config.recipe import Recipe
from instructkit.errors import ConfigError
from instructkit.train import distributed as dist

from test_train_methods import convs  # noqa: E402  (same folder)


# --- item 6/8: dtype auto on CUDA by compute capability (no emulated bf16), TF32 ----------------------------
@pytest.mark.parametrize("cap, want", [((7, 0), "float16"), ((7, 5), "float16"), ((8, 0), "bfloat16"),
                                       ((8, 9), "bfloat16"), ((9, 0), "bfloat16")])
def test_auto_dtype_follows_compute_capability(monkeypatch, cap, want):
    from instructkit.models import dtype as dt

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: cap)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)  # V100/T4 say yes (emulation)
    dt.probe.cache_clear()
    try:
        got, why = dt.resolve_dtype("auto", "cuda")
    finally:
        dt.probe.cache_clear()
    assert got == want, why
    # what training does with it: half precision -> fp32 master weights; fp16 also loss scaling (GradScaler)
    assert dist.mixed_precision_for(got, "cuda") == {"float16": "fp16", "bfloat16": "bf16"}[got]


def test_mixed_precision_choice():
    assert dist.mixed_precision_for("float32", "cuda") == "no"
    assert dist.mixed_precision_for("bfloat16", "cpu") == "bf16"
    assert dist.mixed_precision_for("float16", "cpu") == "no"  # fp16 autocast + scaling needs a GPU


def test_tf32_is_enabled_on_cuda(monkeypatch):
    from instructkit.models.dtype import enable_tf32

    before = torch.backends.cuda.matmul.allow_tf32
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    try:
        torch.backends.cuda.matmul.allow_tf32 = False
        enable_tf32()
        assert torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


def test_flash_attention_needs_half_precision():
    from instructkit.train.methods import check_flash_dtype

    check_flash_dtype("flash_attention_2", "bfloat16")
    check_flash_dtype("sdpa", "float32")
    with pytest.raises(ConfigError, match="bfloat16/float16 only"):
        check_flash_dtype("flash_attention_2", "float32")


# --- item 7: bf16 full fine-tuning keeps fp32 master weights ---------------------------------------------
def _changed_share(tmp_path, tiny_tokenizer, dtype):
    from instructkit.models.tiny import make_tiny_model
    from instructkit.train import train

    model = make_tiny_model(tiny_tokenizer, seed=1).to(getattr(torch, dtype))
    model.config.dtype = getattr(torch, dtype)  # as from_pretrained(dtype=...) records it
    before = {k: v.detach().float().clone() for k, v in model.state_dict().items()}
    recipe = load_config(Recipe, None, [f"output_dir={tmp_path / dtype}", f"model.dtype={dtype}", "train.method=full",
                                        "train.lr=2e-5", "train.max_steps=1", "train.warmup_steps=0",
                                        "train.scheduler=constant", "train.progress=false", "train.tensorboard=false",
                                        "train.pack_tokens=128", "data.max_length=128", "model.name_or_path=tiny"])
    res = train(recipe, examples=convs(4), model=model, tokenizer=tiny_tokenizer)
    after = res.model.state_dict()
    moved = sum(int((after[k].float() != before[k]).sum()) for k in before)
    return moved / sum(v.numel() for v in before.values()), res


def test_bf16_full_finetuning_updates_like_fp32(tmp_path, tiny_tokenizer):
    fp32, _ = _changed_share(tmp_path, tiny_tokenizer, "float32")
    bf16, res = _changed_share(tmp_path, tiny_tokenizer, "bfloat16")
    assert fp32 > 0.5  # one AdamW step moves (nearly) every weight that got a gradient
    # pure bf16 AdamW moves far fewer (measured on this model: 21% vs 70% for fp32; lr 2e-5 is below half a
    # bf16 step for most weights); fp32 master weights move like fp32
    assert bf16 == pytest.approx(fp32, abs=0.02), (bf16, fp32)
    assert all(p.dtype == torch.float32 for p in res.model.parameters())  # master weights
    assert "fp32 master weights" in res.summary["precision"]
    from safetensors.torch import load_file
    saved = load_file(str(res.model_dir / "model.safetensors"))
    assert {v.dtype for v in saved.values()} == {torch.bfloat16}  # exported in the dtype it was loaded in


# --- item 5: FSDP wraps the model's own decoder layers ---------------------------------------------------
def _tiny(arch):
    import transformers as tf

    kw = dict(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
              num_key_value_heads=2)
    cfg = {"llama": tf.LlamaConfig, "qwen2": tf.Qwen2Config, "mistral": tf.MistralConfig}[arch](**kw)
    return {"llama": tf.LlamaForCausalLM, "qwen2": tf.Qwen2ForCausalLM, "mistral": tf.MistralForCausalLM}[arch](cfg)


@pytest.mark.parametrize("arch, layer", [("llama", "LlamaDecoderLayer"), ("qwen2", "Qwen2DecoderLayer"),
                                         ("mistral", "MistralDecoderLayer")])
def test_fsdp_wrap_class_comes_from_the_model(arch, layer):
    from accelerate.utils import FullyShardedDataParallelPlugin
    from peft import LoraConfig, get_peft_model

    from instructkit.train.loss import CausalLMLoss

    model = get_peft_model(_tiny(arch), LoraConfig(r=2, target_modules=["q_proj"]))
    assert dist.wrap_classes(model) == [layer]
    # the old shipped config named LlamaDecoderLayer for every model: Qwen2/Mistral raised in prepare
    plugin = FullyShardedDataParallelPlugin(fsdp_version=2, auto_wrap_policy="transformer_based_wrap",
                                            transformer_cls_names_to_wrap=["LlamaDecoderLayer"])
    acc = types.SimpleNamespace(distributed_type="DistributedType.FSDP", state=types.SimpleNamespace(fsdp_plugin=plugin))
    wrapper = CausalLMLoss(model)
    dist.set_wrap_classes(acc, model)
    plugin.set_auto_wrap_policy(wrapper)  # what accelerate's prepare calls: must find the class
    wrapped = [m for m in wrapper.modules() if plugin.auto_wrap_policy(module=m, recurse=False, nonwrapped_numel=0)]
    assert len(wrapped) == 2 and {type(m).__name__ for m in wrapped} == {layer}


def test_wrap_class_missing_is_a_clear_error():
    m = _tiny("llama")
    m._no_split_modules = ["NotALayer"]
    with pytest.raises(ConfigError, match="fsdp_transformer_layer_cls_to_wrap"):
        dist.wrap_classes(m)


# --- items 4, 11, 14: set-ups refused or fixed before any model loads ------------------------------------
def _fake_acc(kind, **state):
    return types.SimpleNamespace(distributed_type=f"DistributedType.{kind}", state=types.SimpleNamespace(**state))


def test_fsdp1_with_adapters_and_qlora_under_fsdp_are_refused():
    acc = _fake_acc("FSDP", fsdp_plugin=types.SimpleNamespace(fsdp_version=1))
    with pytest.raises(ConfigError, match="fsdp_version: 2"):
        dist.check_setup(acc, method="lora", max_grad_norm=1.0)
    dist.check_setup(acc, method="full", max_grad_norm=1.0)
    acc2 = _fake_acc("FSDP", fsdp_plugin=types.SimpleNamespace(fsdp_version=2))
    with pytest.raises(ConfigError, match="qlora under FSDP"):
        dist.check_setup(acc2, method="qlora", max_grad_norm=1.0)


def test_deepspeed_clips_by_the_recipe_norm_and_zero3_needs_16bit_save():
    cfg = {"gradient_clipping": 1.0, "zero_optimization": {"stage": 2}}
    acc = _fake_acc("DEEPSPEED", deepspeed_plugin=types.SimpleNamespace(deepspeed_config=cfg,
                                                                        zero3_save_16bit_model=False))
    dist.check_setup(acc, method="full", max_grad_norm=0.3)
    assert cfg["gradient_clipping"] == 0.3
    cfg["zero_optimization"]["stage"] = 3
    with pytest.raises(ConfigError, match="zero3_save_16bit_model"):
        dist.check_setup(acc, method="full", max_grad_norm=0.3)


def test_deepspeed_launch_without_gpus_keeps_deepspeed_on_gloo(monkeypatch):
    """accelerate drops DeepSpeed under cpu=True (a silent DDP run): a DeepSpeed launch on CPU names gloo."""
    monkeypatch.delenv("ACCELERATE_USE_DEEPSPEED", raising=False)
    assert dist._cpu_args(False) == {"cpu": False}
    assert dist._cpu_args(True) == {"cpu": True}  # torchrun / FSDP on CPU: accelerate's MULTI_CPU (gloo)
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    args = dist._cpu_args(True)
    assert args["cpu"] is False and [h.backend for h in args["kwargs_handlers"]] == ["gloo"]


def test_zero3_placeholders_are_grouped_by_their_real_shape():
    """ZeRO-3 loads partitioned (empty 1-D placeholders carrying ds_shape): matrices still get weight decay, and
    no empty group goes to DeepSpeed (it drops it, and the LR schedule built before no longer fits)."""
    from instructkit.train.optim import param_groups

    m = torch.nn.Linear(4, 3)
    for p in m.parameters():
        p.ds_shape = p.shape
        p.data = torch.empty(0)
    assert [(len(g["params"]), g["weight_decay"]) for g in param_groups(m, 0.1)] == [(1, 0.1), (1, 0.0)]
    m.weight.requires_grad_(False)
    assert [g["weight_decay"] for g in param_groups(m, 0.1)] == [0.0]


# --- item 1: placement at load ------------------------------------------------------------------------
def test_model_loads_onto_its_gpu_unless_fsdp_or_deepspeed_places_it():
    gpu = types.SimpleNamespace(type="cuda")
    acc = types.SimpleNamespace(device=gpu, distributed_type="DistributedType.MULTI_GPU", local_process_index=3)
    assert dist.load_device_map(acc) == {"": 3}
    acc.distributed_type = "DistributedType.FSDP"
    assert dist.load_device_map(acc) is None
    acc = types.SimpleNamespace(device=types.SimpleNamespace(type="cpu"), distributed_type="DistributedType.NO")
    assert dist.load_device_map(acc) is None


def test_probe_runs_on_the_prepared_model(tmp_path, tiny_tokenizer, monkeypatch):
    """The probe sees the model after prepare, on the accelerator's device, under its autocast."""
    from instructkit.models.tiny import make_tiny_model
    from instructkit.train import probe, train

    seen = []
    real = probe.check_model

    def spy(lm, **kw):
        seen.append((next(lm.parameters()).device.type, kw["device"], kw["compute_dtype"], kw["autocast"]))
        return real(lm, **kw)

    monkeypatch.setattr(probe, "check_model", spy)
    from instructkit.train.loss import CausalLMLoss
    real_forward, autocast_on = CausalLMLoss.forward, []

    def forward(self, *a, **k):  # training steps after the probe still run under the bf16 autocast
        autocast_on.append(torch.is_autocast_enabled("cpu"))
        return real_forward(self, *a, **k)

    monkeypatch.setattr(CausalLMLoss, "forward", forward)
    recipe = load_config(Recipe, None, [f"output_dir={tmp_path}", "train.max_steps=1", "train.progress=false",
                                        "train.tensorboard=false", "model.dtype=bfloat16", "train.method=lora",
                                        "train.pack_tokens=128", "data.max_length=128"])
    train(recipe, examples=convs(2), model=make_tiny_model(tiny_tokenizer).to(torch.bfloat16),
          tokenizer=tiny_tokenizer)
    assert len(seen) == 1
    assert seen[0][2] == torch.bfloat16 and seen[0][3] is not None
    assert autocast_on and all(autocast_on), autocast_on


# --- item 10: QLoRA probe tolerance comes from the compute dtype --------------------------------------------
def test_probe_tolerance_follows_the_compute_dtype_not_fp32_parameters(tiny_tokenizer, monkeypatch):
    """QLoRA holds fp32 norms/adapters over a 4-bit base computing in bf16: the fp32 parameters' tolerance
    (1e-3) refuses a correct packed forward whose bf16 rounding alone is ~1e-2 (measured on SmolLM2; the
    tiny model's rounding is 0 on CPU, so the probe's measurement is set to that value here)."""
    from accelerate import Accelerator

    from instructkit.models.tiny import make_tiny_model
    from instructkit.train import probe
    from instructkit.train.build import probe_model
    from instructkit.train.loss import CausalLMLoss

    monkeypatch.setattr(probe, "packing_leak", lambda lm, device="cpu": 0.02)
    monkeypatch.setattr(probe, "head_mismatch", lambda lm, device="cpu": 0.0)
    lm = make_tiny_model(tiny_tokenizer)  # fp32 parameters, as QLoRA's trainable/norm ones
    with pytest.raises(ConfigError, match="attend to each other"):  # the old rule: tolerance of fp32 params
        probe.check_model(lm, packing=True, attn_implementation="sdpa")
    recipe = load_config(Recipe, None, ["model.dtype=bfloat16", "train.method=qlora"])
    found = probe_model(recipe, Accelerator(), CausalLMLoss(lm), packing=True)
    assert found["packing_leak"] == 0.02


# --- item 13: eval_fn runs once under DDP (scores broadcast), inside the sharded forward under FSDP --------
@pytest.mark.parametrize("main", [True, False])
def test_eval_fn_runs_on_the_main_process_only_under_ddp(monkeypatch, main):
    import accelerate.utils

    from instructkit.train.distributed import run_eval_fn

    calls = []
    lm = torch.nn.Linear(2, 2)
    wrapper = torch.nn.Module()  # the training wrapper: a Module holding the model as .lm
    wrapper.lm = lm
    acc = types.SimpleNamespace(is_main_process=main, num_processes=2, distributed_type="DistributedType.MULTI_GPU",
                                unwrap_model=lambda w, **k: wrapper)

    def broadcast(objs, from_process=0):  # what rank 0 computed reaches every rank
        objs[0] = objs[0] if main else {"acc": 0.5}
        return objs

    monkeypatch.setattr(accelerate.utils, "broadcast_object_list", broadcast)
    got = run_eval_fn(acc, object(), lambda m: calls.append(m) or {"acc": 0.5})
    assert got == {"acc": 0.5}
    assert calls == ([lm] if main else [])  # the other ranks do not repeat the whole evaluation


def test_eval_fn_under_fsdp_runs_inside_the_root_forward():
    from instructkit.train.distributed import run_eval_fn

    inner = torch.nn.Linear(2, 2)
    root = torch.nn.Module()
    root.lm = inner
    seen = []
    root.register_forward_pre_hook(lambda m, a: seen.append("root hook"))  # FSDP2 gathers the root's shards here
    acc = types.SimpleNamespace(is_main_process=False, num_processes=2, distributed_type="DistributedType.FSDP",
                                unwrap_model=lambda w, **k: w)
    got = run_eval_fn(acc, root, lambda m: seen.append(m) or {"acc": 1.0})
    assert got == {"acc": 1.0} and seen == ["root hook", inner]
