"""DeepSpeed ZeRO-2 and ZeRO-3 through ``accelerate launch`` with the shipped configs: 2 gloo processes on CPU.

DeepSpeed picks its CPU accelerator on a machine without GPUs (``DS_ACCELERATOR=cpu`` here, to say so) and
communicates over gloo when oneCCL's ``oneccl_bindings_for_pytorch`` is not installed (there is none for
torch 2.13). accelerate itself ignores a DeepSpeed launch without GPUs; ``train.distributed._cpu_args``
keeps it. Each run must (1) really be DeepSpeed (``summary.json`` names DeepSpeed's ZeRO optimizer, not a
DDP fallback), (2) compute the same per-step losses as one process with the same global batch, (3) write
step checkpoints with one ZeRO optimizer shard per rank in ``accelerate_state/`` (LoRA: and the adapter), and
(4) resume from step 2 to the same losses and final weights as the uninterrupted run.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

pytest.importorskip("deepspeed")

from test_train_distributed import run_all, write_data  # noqa: E402  same folder (pytest puts it on sys.path)
from test_train_fsdp2 import check_resume, final_weights, launch, losses, recipe  # noqa: E402

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
ZERO2 = ROOT / "configs" / "accelerate" / "deepspeed_zero2.yaml"
ZERO3 = ROOT / "configs" / "accelerate" / "deepspeed_zero3.yaml"
#: the optimizer DeepSpeed wraps ours in, per stage (what summary.json reports)
ZERO_OPTIMIZER = {ZERO2: "DeepSpeedZeroOptimizer", ZERO3: "DeepSpeedZeroOptimizer_Stage3"}


def check_save_resume(tmp_path: Path, monkeypatch, method: str, config: Path) -> None:
    from instructkit.models.tiny import save_tiny

    monkeypatch.setenv("DS_ACCELERATOR", "cpu")  # run_all passes the environment on
    model_dir = save_tiny(str(tmp_path / "tiny"))
    cfg = recipe(tmp_path, model_dir, write_data(tmp_path / "data.jsonl"), method)
    one, full, resumed = tmp_path / "one", tmp_path / "ds", tmp_path / "resumed"
    run_all({"one": [sys.executable, "-m", "instructkit", "train", "--config", str(cfg), f"output_dir={one}",
                     "train.micro_batch_size=2"],
             "ds": launch(cfg, full, config=config)}, tmp_path, timeout=900)
    summary = json.loads((full / "summary.json").read_text())
    assert summary["optimizer"] == ZERO_OPTIMIZER[config], summary["optimizer"]
    ref = losses(one)
    assert sorted(ref) == [1, 2, 3, 4]
    assert losses(full) == pytest.approx(ref, rel=1e-4), "2 ranks x 1 differ from 1 process x 2"
    ck = full / "checkpoint-2"
    assert not (ck / "optimizer.pt").exists()
    shards = sorted(p.name for p in (ck / "accelerate_state").rglob("*optim_states.pt"))
    assert len(shards) == 2, shards  # one ZeRO optimizer partition per rank
    assert (ck / "adapter_model.safetensors").is_file() == (method == "lora")
    a, w0 = check_resume(tmp_path, cfg, config, ck, full, resumed), final_weights(one)
    assert a.keys() == w0.keys()
    assert max((a[k].float() - w0[k].float()).abs().max().item() for k in a) < 1e-4


# default suite like the FSDP2 LoRA test (42-58 s here under load; the first run on a machine adds DeepSpeed's
# one-time JIT build of its shared-memory comm op, cached in ~/.cache/torch_extensions); the others are slow
def test_zero2_lora_save_resume(tmp_path, monkeypatch):
    check_save_resume(tmp_path, monkeypatch, "lora", ZERO2)


@pytest.mark.slow
def test_zero2_full_save_resume(tmp_path, monkeypatch):
    check_save_resume(tmp_path, monkeypatch, "full", ZERO2)


@pytest.mark.slow
def test_zero3_lora_save_resume(tmp_path, monkeypatch):
    check_save_resume(tmp_path, monkeypatch, "lora", ZERO3)


@pytest.mark.slow
def test_zero3_full_save_resume(tmp_path, monkeypatch):
    check_save_resume(tmp_path, monkeypatch, "full", ZERO3)
