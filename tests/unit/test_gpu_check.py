"""``bench/gpu_check.sh --check``: the GPU first-minutes script's dry run works on CPU - it parses every
recipe with its overrides and the shipped FSDP config, builds the model on meta and plans the five checks."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_check_dry_run(tmp_path, tiny_model_dir):
    out = tmp_path / "gc"
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    res = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), "--check", "--model", tiny_model_dir,
                          "--out", str(out)], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    text = res.stdout
    for line in ("lora_fa2: recipe ok (method lora, objective sft, dtype bfloat16, attention flash_attention_2)",
                 "qlora: recipe ok (method qlora", "dpo: recipe ok (method lora, objective dpo",
                 "fsdp.yaml: FSDP2, TRANSFORMER_BASED_WRAP, cpu_ram_efficient_loading=True",
                 "built on meta", "FSDP wraps ['LlamaDecoderLayer']"):
        assert line in text, text
    md = (out / "gpu_check.md").read_text()
    rows = [r for r in md.splitlines() if r.startswith("| ") and "planned" in r]
    assert [r.split("|")[1].strip()[0] for r in rows] == list("11223445")  # the five checks, in order
    assert "--num_processes 1 -m instructkit train" in md and "train.resume=auto" in md
    assert "instructkit export --adapter" in md and "--step precision" in md
    import yaml
    q = yaml.safe_load((out / "qlora.yaml").read_text())["train"]
    assert (q["optimizer"], q["gradient_checkpointing"], q["packing"]) == ("paged_adamw", True, True)
    assert sum(1 for _ in (out / "pairs.jsonl").open()) == 16
