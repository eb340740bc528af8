"""A real `instructkit train` DPO process killed with SIGKILL and resumed reproduces the uninterrupted run
(as tests/integration/train/test_train_kill_resume.py does for SFT)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.killing import sigkill_at_first_checkpoint

from test_pref_train import arithmetic_pairs  # noqa: E402  (same folder)

pytestmark = pytest.mark.integration


def _recipe(tmp_path, model_dir, data, name):
    p = tmp_path / f"{name}.yaml"
    p.write_text(f"""name: {name}
seed: 3
output_dir: {tmp_path / name}
model: {{name_or_path: {model_dir}}}
data: {{paths: [{data}], max_length: 160}}
train: {{objective: dpo, max_steps: 12, save_every: 3, keep_last: 2, log_every: 1, lr: 2.0e-3, pack_tokens: 320,
        micro_batch_size: 1, grad_accum: 2, progress: false, tensorboard: false, warmup_steps: 2,
        dpo: {{ref_cache_dir: {tmp_path / 'refcache'}}}}}
""")
    return p


def _cmd(recipe, *extra):
    return [sys.executable, "-m", "instructkit", "train", "--config", str(recipe), *extra]


def _rows(run):
    return {r["step"]: r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "loss" in r}


def test_dpo_sigkill_then_resume_matches_uninterrupted(tmp_path, tiny_model_dir):
    data = arithmetic_pairs(tmp_path / "p.jsonl", 24)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    ref = _recipe(tmp_path, tiny_model_dir, data, "ref")
    # the reference run also fills the reference-log-prob cache the killed run then shares
    assert subprocess.run(_cmd(ref), env=env, capture_output=True).returncode == 0
    killed = _recipe(tmp_path, tiny_model_dir, data, "killed")
    proc = subprocess.Popen(_cmd(killed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    done = sigkill_at_first_checkpoint(proc, tmp_path / "killed", 120)
    assert max(done) < 12
    res = subprocess.run(_cmd(killed, "--resume"), env=env, capture_output=True, timeout=180)
    assert res.returncode == 0, res.stderr.decode()[-2000:]
    a, b = _rows(tmp_path / "ref"), _rows(tmp_path / "killed")
    assert sorted(a) == sorted(b) == list(range(1, 13))
    for s in a:
        for k in ("loss", "logps_chosen", "logps_rejected", "reward_margin"):
            assert abs(a[s][k] - b[s][k]) < 1e-6, (s, k, a[s], b[s])
    assert not list((tmp_path / "killed").glob(".tmp-*"))
