"""A real `instructkit train` process killed with SIGKILL and resumed reproduces the uninterrupted loss curve."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import pytest

from tests.killing import sigkill_at_first_checkpoint

pytestmark = pytest.mark.integration

WORDS = "the a of to and in is it you that he was for on are with as his they be at one have this".split()


def _write_data(path, n=60, seed=0):
    rng = random.Random(seed)
    with open(path, "w") as f:
        for _ in range(n):
            f.write(json.dumps({"instruction": " ".join(rng.choices(WORDS, k=rng.randint(3, 20))),
                                "output": " ".join(rng.choices(WORDS, k=rng.randint(2, 25)))}) + "\n")


def _recipe(tmp_path, model_dir, data, name):
    p = tmp_path / f"{name}.yaml"
    p.write_text(f"""name: {name}
seed: 3
output_dir: {tmp_path / name}
model: {{name_or_path: {model_dir}}}
data: {{paths: [{data}], max_length: 96}}
train: {{max_steps: 24, save_every: 4, keep_last: 2, log_every: 1, lr: 3.0e-3, pack_tokens: 96,
        micro_batch_size: 2, grad_accum: 2, progress: false, tensorboard: false, scheduler: cosine, warmup_steps: 3}}
""")
    return p


def _cmd(recipe, *extra):
    return [sys.executable, "-m", "instructkit", "train", "--config", str(recipe), *extra]


def _losses(run):
    return {r["step"]: r["loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
            if "loss" in r}


def test_sigkill_then_resume_matches_uninterrupted(tmp_path, tiny_model_dir):
    data = tmp_path / "data.jsonl"
    _write_data(data)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    ref = _recipe(tmp_path, tiny_model_dir, data, "ref")
    killed = _recipe(tmp_path, tiny_model_dir, data, "killed")
    # the uninterrupted reference runs alongside (1 thread each: bitwise-identical CPU kernels)
    ref_job = subprocess.Popen(_cmd(ref), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    proc = subprocess.Popen(_cmd(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    done = sigkill_at_first_checkpoint(proc, tmp_path / "killed", 90)
    assert max(done) < 24, "the run finished before it could be killed"
    jobs = [subprocess.Popen(_cmd(killed, "--resume"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE),
            ref_job]
    for j in jobs:
        assert j.wait(timeout=120) == 0, j.stderr.read().decode()[-2000:]
    a, b = _losses(tmp_path / "ref"), _losses(tmp_path / "killed")
    assert sorted(a) == sorted(b) == list(range(1, 25))
    assert max(abs(a[s] - b[s]) for s in a) < 1e-6
    assert not list((tmp_path / "killed").glob(".tmp-*"))  # no half-written checkpoint left behind
