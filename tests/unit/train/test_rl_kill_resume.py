"""A real `instructkit train` PPO process (LoRA policy + value head) killed with SIGKILL mid-run and
resumed ends with the same weights and the same per-step metrics as the uninterrupted run: the sampling
of every rollout is seeded from (seed, step), the value head and optimizer state are in the checkpoint;
with ``num_iterations: 2`` (PPO epochs) also the order of the micro-batches in the second pass."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.killing import sigkill_at_first_checkpoint

from test_rl_train import arithmetic_prompts  # noqa: E402  (same folder)

pytestmark = pytest.mark.integration
STEPS = 6


def _recipe(tmp_path, model_dir, data, name, mu=1):
    p = tmp_path / f"{name}.yaml"
    p.write_text(f"""name: {name}
seed: 5
output_dir: {tmp_path / name}
model: {{name_or_path: {model_dir}}}
data: {{paths: [{data}], max_length: 128}}
train: {{objective: ppo, method: lora, max_steps: {STEPS}, save_every: 2, keep_last: 2, log_every: 1, lr: 5.0e-3,
        micro_batch_size: 2, grad_accum: 2, progress: false, tensorboard: false, warmup_steps: 1,
        rl: {{num_generations: 2, max_new_tokens: 8, heldout_prompts: 0, beta: 0.05, temperature: 1.0,
             num_iterations: {mu},
             rewards: [{{kind: format, pattern: '[0-9]'}}, {{kind: answer}}]}}}}
""")
    return p


def _cmd(recipe, *extra):
    return [sys.executable, "-m", "instructkit", "train", "--config", str(recipe), *extra]


def _rows(run):
    return {r["step"]: r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in r}


def _weights(run):
    from safetensors.torch import load_file
    return load_file(str(run / "model" / "adapter_model.safetensors"))


@pytest.mark.parametrize("mu", [1, 2])
def test_rl_sigkill_then_resume_matches_uninterrupted(tmp_path, tiny_model_dir, mu):
    data = arithmetic_prompts(tmp_path / "p.jsonl", 24)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    ref = _recipe(tmp_path, tiny_model_dir, data, "ref", mu)
    res = subprocess.run(_cmd(ref), env=env, capture_output=True)
    assert res.returncode == 0, res.stderr.decode()[-2000:]
    killed = _recipe(tmp_path, tiny_model_dir, data, "killed", mu)
    proc = subprocess.Popen(_cmd(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    done = sigkill_at_first_checkpoint(proc, tmp_path / "killed", 300)
    assert max(done) < STEPS
    assert (next((tmp_path / "killed").glob("checkpoint-*")) / "objective_state.pt").is_file()  # the value head
    res = subprocess.run(_cmd(killed, "--resume"), env=env, capture_output=True, timeout=600)
    assert res.returncode == 0, res.stderr.decode()[-2000:]
    a, b = _rows(tmp_path / "ref"), _rows(tmp_path / "killed")
    assert sorted(a) == sorted(b) == list(range(1, STEPS + 1))
    for s in a:
        for k in ("loss", "reward", "kl", "value_loss", "response_length"):
            assert abs(a[s][k] - b[s][k]) < 1e-6, (s, k, a[s], b[s])
    assert any(a[s]["kl"] > 0 for s in a)  # the policy moved: the comparison is not trivially equal
    if mu > 1:
        assert any(a[s]["clip_frac"] > 0 or abs(a[s]["ratio"] - 1) > 1e-6 for s in a)  # the later passes moved
    wa, wb = _weights(tmp_path / "ref"), _weights(tmp_path / "killed")
    assert wa.keys() == wb.keys()
    for k in wa:
        assert (wa[k] - wb[k]).abs().max().item() < 1e-6, k
