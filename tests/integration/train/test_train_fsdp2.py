"""FSDP2 through ``accelerate launch`` with the shipped ``configs/accelerate/fsdp.yaml``: 2 gloo processes on CPU.

The shipped config turns on ``cpu_ram_efficient_loading``: rank 1 builds the model on the meta device and
receives rank 0's weights at prepare; the start-up probe runs after prepare, on the sharded model. The
LoRA run must (1) compute the same per-step losses as one process with the same global batch, (2) write
step checkpoints with the adapter (gathered alone) and the sharded accelerate state but no full weights,
and (3) resume from step 2 to the same losses and final adapter as the uninterrupted run.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pytest
import yaml

from test_train_distributed import run_all, write_data  # same folder (pytest puts it on sys.path)

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
FSDP = ROOT / "configs" / "accelerate" / "fsdp.yaml"
DDP = ROOT / "configs" / "accelerate" / "ddp.yaml"


def recipe(tmp: Path, model_dir: str, data: Path, method: str) -> Path:
    path = tmp / f"{method}.yaml"
    path.write_text(yaml.safe_dump({
        "name": "fsdp2", "seed": 0,
        "model": {"name_or_path": model_dir, "dtype": "float32", "attn_implementation": "sdpa"},
        "data": {"paths": [str(data)], "max_length": 256},
        "train": {"method": method, "lr": 1e-3 if method == "lora" else 3e-4, "max_steps": 4, "packing": False,
                  "scheduler": "constant", "warmup_steps": 0, "max_grad_norm": 1.0, "log_every": 1,
                  "save_every": 2, "keep_last": 2, "tensorboard": False, "progress": False,
                  "lora": {"r": 4, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"]}},
    }))
    return path


def launch(cfg: Path, out: Path, *extra: str, config: Path = FSDP) -> list[str]:
    return [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(config), "--num_processes", "2",
            "-m", "instructkit", "train", "--config", str(cfg), f"output_dir={out}", "train.micro_batch_size=1",
            *extra]


def losses(run: Path) -> dict[int, float]:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def final_weights(run: Path) -> dict:
    from safetensors.torch import load_file
    name = "adapter_model.safetensors" if (run / "model" / "adapter_model.safetensors").is_file() \
        else "model.safetensors"
    return load_file(str(run / "model" / name))


def check_resume(tmp_path: Path, cfg: Path, config: Path, ck: Path, full: Path, resumed: Path) -> dict:
    """Resume from ``ck`` (step 2) in a fresh folder: steps 3-4 and the final weights match the uninterrupted run
    in ``full``; returns its final weights."""
    resumed.mkdir()
    shutil.copytree(ck, resumed / "checkpoint-2")
    run_all({"resumed": launch(cfg, resumed, "train.resume=auto", config=config)}, tmp_path, timeout=900)
    got = losses(resumed)
    assert [got[s] for s in (3, 4)] == pytest.approx([losses(full)[s] for s in (3, 4)], rel=1e-5)
    a, b = final_weights(full), final_weights(resumed)
    assert a.keys() == b.keys() and a
    assert max((a[k].float() - b[k].float()).abs().max().item() for k in a) < 1e-6
    return a


def check_save_resume(tmp_path: Path, method: str, config: Path = FSDP) -> None:
    from instructkit.models.tiny import save_tiny

    model_dir = save_tiny(str(tmp_path / "tiny"))
    cfg = recipe(tmp_path, model_dir, write_data(tmp_path / "data.jsonl"), method)
    one, full, resumed = tmp_path / "one", tmp_path / "fsdp", tmp_path / "resumed"
    logs = run_all({"one": [sys.executable, "-m", "instructkit", "train", "--config", str(cfg), f"output_dir={one}",
                            "train.micro_batch_size=2"],
                    "fsdp": launch(cfg, full, config=config)}, tmp_path, timeout=900)
    sharded = config == FSDP
    assert ("rank 1: model built on the meta device" in logs["fsdp"]) == sharded, logs["fsdp"][-3000:]
    ref = losses(one)
    assert sorted(ref) == [1, 2, 3, 4]
    assert losses(full) == pytest.approx(ref, rel=1e-4), "2 ranks x 1 differ from 1 process x 2"
    ck = full / "checkpoint-2"
    assert (ck / "accelerate_state").is_dir() == sharded and (ck / "optimizer.pt").is_file() != sharded
    assert (ck / "adapter_model.safetensors").is_file() == (method == "lora")
    if sharded:
        assert not (ck / "model.safetensors").exists(), "a step checkpoint under FSDP must not gather full weights"
    a, w0 = check_resume(tmp_path, cfg, config, ck, full, resumed), final_weights(one)
    assert max((a[k].float() - w0[k].float()).abs().max().item() for k in a) < 1e-4


def test_fsdp2_lora_save_resume(tmp_path):
    check_save_resume(tmp_path, "lora")


@pytest.mark.slow
def test_fsdp2_full_save_resume(tmp_path):
    check_save_resume(tmp_path, "full")


@pytest.mark.slow
def test_ddp_accelerate_launch_lora_save_resume(tmp_path):
    """The shipped ddp.yaml through accelerate launch: on CPU it runs as 2 gloo processes (DDP)."""
    check_save_resume(tmp_path, "lora", DDP)
