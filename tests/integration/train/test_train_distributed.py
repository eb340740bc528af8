"""Two processes (torchrun, gloo on CPU) train exactly like one process with the same global batch.

Three runs of ``instructkit train`` on the tiny model, same 8 examples, same seed, 4 optimizer steps of
2 examples each:

* ``batch``: 1 process, micro_batch_size=2, grad_accum=1 (both examples in one padded forward)
* ``accum``: 1 process, micro_batch_size=1, grad_accum=2
* ``ddp``:   2 processes (``torchrun --nproc_per_node 2 -m instructkit train``), micro_batch_size=1, grad_accum=1

Answer lengths differ a lot between examples (so between the two ranks/micro-batches of every step): a
loss averaged per micro-batch or per rank, instead of over all trained tokens of the step, makes ``accum``
and ``ddp`` drift from ``batch``. The per-step losses in metrics.jsonl and the final weights must agree.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.integration

WORDS = "the cat sat on a mat and then it saw one more bird fly over the water".split()


#: answer lengths in words: a 2-70 word spread, so the two halves of (almost) any step are uneven
ANSWER_WORDS = [2, 60, 35, 5, 3, 50, 70, 9]


def write_data(path: Path) -> Path:
    lines = []
    for i, k in enumerate(ANSWER_WORDS):
        answer = " ".join(WORDS[(i + j) % len(WORDS)] for j in range(k))
        lines.append(json.dumps({"messages": [{"role": "user", "content": f"Say {k} words, {i}."},
                                              {"role": "assistant", "content": answer}]}))
    path.write_text("\n".join(lines) + "\n")
    return path


def run_all(cmds: dict[str, list[str]], cwd: Path, timeout: int = 300) -> dict[str, str]:
    """Start every run at once (each process uses one thread): the imports dominate, and run side by side
    they overlap instead of adding up."""
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false", HF_HUB_OFFLINE="1")
    procs = {name: subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True) for name, cmd in cmds.items()}
    failed, logs = [], {}
    for name, p in procs.items():
        out, err = p.communicate(timeout=timeout)
        logs[name] = out + err
        if p.returncode != 0:
            failed.append(f"{name}: {' '.join(cmds[name])}\n{out[-1500:]}\n{err[-3000:]}")
    assert not failed, "\n\n".join(failed)
    return logs


def losses(run_dir: Path) -> list[float]:
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
    return [r["loss"] for r in rows if "loss" in r]


def weights(run_dir: Path) -> dict:
    from safetensors.torch import load_file
    return load_file(str(run_dir / "model" / "model.safetensors"))


def test_two_processes_match_one(tmp_path):
    from instructkit.models.tiny import save_tiny

    model_dir = save_tiny(str(tmp_path / "tiny"))
    data = write_data(tmp_path / "data.jsonl")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(yaml.safe_dump({
        "name": "dist", "seed": 0,
        "model": {"name_or_path": model_dir, "dtype": "float32", "attn_implementation": "sdpa"},
        "data": {"paths": [str(data)], "max_length": 512},
        "train": {"method": "full", "lr": 1e-3, "epochs": 1, "packing": False, "scheduler": "constant",
                  "warmup_steps": 0, "max_grad_norm": 0.0, "log_every": 1, "tensorboard": False,
                  "progress": False, "keep_last": 1},
    }))
    runs = {"batch": (1, 2, 1), "accum": (1, 1, 2), "ddp": (2, 1, 1)}  # processes, micro batch, grad accum
    cmds = {}
    for name, (procs, micro, accum) in runs.items():
        launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}"]
                    if procs > 1 else [sys.executable])
        cmds[name] = [*launcher, "-m", "instructkit", "train", "--config", str(recipe),
                      f"output_dir={tmp_path / name}", f"train.micro_batch_size={micro}", f"train.grad_accum={accum}"]
    run_all(cmds, tmp_path)

    ref = losses(tmp_path / "batch")
    assert len(ref) == 4, ref
    w_ref = weights(tmp_path / "batch")
    from safetensors.torch import load_file
    w0 = load_file(str(Path(model_dir) / "model.safetensors"))
    moved = max((w_ref[k] - w0[k]).abs().max().item() for k in w0)
    assert moved > 1e-3, "training did not change the weights: the comparison below would be vacuous"
    for name in ("accum", "ddp"):
        got = losses(tmp_path / name)
        assert got == pytest.approx(ref, rel=1e-5, abs=1e-6), f"{name} per-step losses {got} != {ref}"
        w = weights(tmp_path / name)
        assert w.keys() == w_ref.keys()
        worst = max((w[k] - w_ref[k]).abs().max().item() for k in w_ref)
        assert worst < 1e-5, f"{name}: final weights differ from the one-batch run by up to {worst:.2e}"
