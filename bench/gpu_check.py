"""The first minutes on a GPU (issue #27): five short checks of the GPU set-ups, one markdown table.

    bench/gpu_check.sh [--model M] [--out DIR] [--timeout S]    # on a CUDA machine (one H100: ~5 min)
    bench/gpu_check.sh --check                                   # dry run on CPU: plan, parse, build on meta

1. lora_fa2   LoRA, bf16, flash_attention_2, packing, 2 steps (then the same with sdpa)
2. qlora      QLoRA (NF4, bf16 compute), paged AdamW, gradient checkpointing, packing, 2 steps; then export
3. dpo        DPO + LoRA, bf16, 16 pairs, 2 steps (the reference pass on the GPU)
4. fsdp       accelerate launch with configs/accelerate/fsdp.yaml (one process per GPU), 4 steps saving at
              step 2; resume from checkpoint-2: steps 3-4 must give the same losses
5. precision  one bf16 AdamW step at lr 2e-5: share of weights changed (fp32 master weights: ~fp32's);
              the decode engine at 32 streams: time in the forward vs in sampling (logits stay on the GPU)

``--check`` proves without CUDA what can be proven: the arguments, every recipe with its overrides parses,
the accelerate config parses, the model's config builds on the meta device (parameter count, the FSDP wrap
class), and prints the exact commands the real run executes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
FSDP_CONFIG = REPO / "configs" / "accelerate" / "fsdp.yaml"
WORDS = ("the model reads a question and writes a short clear answer about numbers words colours animals "
         "cities rivers and simple facts people ask every day").split()


def write_data(out: Path) -> tuple[Path, Path]:
    """64 conversations (answers of 20-200 words) and 16 preference pairs, written locally."""
    sft, pairs = out / "sft.jsonl", out / "pairs.jsonl"
    rows = []
    for i in range(64):
        n = 20 + (i * 37) % 180
        answer = " ".join(WORDS[(i + j) % len(WORDS)] for j in range(n))
        rows.append({"messages": [{"role": "user", "content": f"Question {i}: say {n} words."},
                                  {"role": "assistant", "content": answer}]})
    sft.write_text("".join(json.dumps(r) + "\n" for r in rows))
    prefs = [{"prompt": f"Name fact {i}.", "chosen": " ".join(WORDS[i:i + 12]), "rejected": " ".join(WORDS[:3])}
             for i in range(16)]
    pairs.write_text("".join(json.dumps(r) + "\n" for r in prefs))
    return sft, pairs


def recipes(model: str, out: Path, sft: Path, pairs: Path) -> dict[str, Path]:
    import yaml

    base = {"seed": 0, "model": {"name_or_path": model, "dtype": "bfloat16", "attn_implementation": "sdpa"},
            "data": {"paths": [str(sft)], "max_length": 1024},
            "train": {"method": "lora", "lr": 2e-4, "max_steps": 2, "packing": True, "pack_tokens": 2048,
                      "micro_batch_size": 1, "scheduler": "constant", "warmup_steps": 0, "log_every": 1,
                      "tensorboard": False, "progress": False}}
    specs = {
        "lora": {},
        "qlora": {"train": {"method": "qlora", "optimizer": "paged_adamw", "gradient_checkpointing": True,
                            "lora": {"r": 64, "alpha": 16}}},
        "dpo": {"data": {"paths": [str(pairs)], "max_length": 512},
                "train": {"objective": "dpo", "lr": 5e-6, "pack_tokens": 1024}},
        "fsdp": {"train": {"max_steps": 4, "save_every": 2, "keep_last": 2}},
    }
    paths = {}
    for name, over in specs.items():
        r = json.loads(json.dumps(base))
        for section, values in over.items():
            r[section].update(values)
        r["name"] = f"gpu_check_{name}"
        paths[name] = out / f"{name}.yaml"
        paths[name].write_text(yaml.safe_dump(r))
    return paths


def plan(model: str, out: Path) -> list[dict[str, Any]]:
    """The commands of the real run, in order: ``{"check", "name", "cmd", "after"}``."""
    sft, pairs = write_data(out)
    r = recipes(model, out, sft, pairs)
    ik = [sys.executable, "-m", "instructkit"]
    gpus = os.environ.get("GPU_CHECK_GPUS", "1")
    fsdp = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(FSDP_CONFIG),
            "--num_processes", gpus, "-m", "instructkit", "train", "--config", str(r["fsdp"])]
    return [
        {"check": "1 lora_fa2", "name": "lora_fa2", "needs": "flash_attn",
         "cmd": [*ik, "train", "--config", str(r["lora"]), f"output_dir={out}/lora_fa2",
                 "model.attn_implementation=flash_attention_2"]},
        {"check": "1 lora_fa2", "name": "lora_sdpa",
         "cmd": [*ik, "train", "--config", str(r["lora"]), f"output_dir={out}/lora_sdpa"]},
        {"check": "2 qlora", "name": "qlora", "needs": "bitsandbytes",
         "cmd": [*ik, "train", "--config", str(r["qlora"]), f"output_dir={out}/qlora"]},
        {"check": "2 qlora", "name": "qlora_export", "needs": "bitsandbytes",
         "cmd": [*ik, "export", "--adapter", f"{out}/qlora/model", "--out", f"{out}/qlora_merged",
                 "--dtype", "bfloat16", "--overwrite"]},
        {"check": "3 dpo", "name": "dpo",
         "cmd": [*ik, "train", "--config", str(r["dpo"]), f"output_dir={out}/dpo",
                 f"train.dpo.ref_cache_dir={out}/refcache"]},
        {"check": "4 fsdp", "name": "fsdp", "cmd": [*fsdp, f"output_dir={out}/fsdp"]},
        {"check": "4 fsdp", "name": "fsdp_resume", "prepare": "resume",
         "cmd": [*fsdp, f"output_dir={out}/fsdp_resume", "train.resume=auto"]},
        {"check": "5 precision", "name": "precision",
         "cmd": [sys.executable, str(Path(__file__)), "--step", "precision", "--model", model, "--out", str(out)]},
    ]


def dry_check(model: str, out: Path, steps: list[dict[str, Any]]) -> list[str]:
    """Everything that needs no GPU: recipes + overrides parse, the accelerate config parses, the model
    builds on meta. Returns report lines (raises on the first failure)."""
    import torch
    from accelerate.commands.config.config_args import load_config_from_file

    from instructkit.config.base import load_config
    from instructkit.config.recipe import Recipe
    from instructkit.models import resolve_model
    from instructkit.train.distributed import wrap_classes
    from instructkit.train.methods import meta_model

    lines = []
    for s in steps:
        cmd = s["cmd"]
        if "train" in cmd and "--config" in cmd:
            i = cmd.index("--config")
            rec = load_config(Recipe, cmd[i + 1], [a for a in cmd[i + 2:] if "=" in a and not a.startswith("-")])
            lines.append(f"{s['name']}: recipe ok (method {rec.train.method}, objective {rec.train.objective}, "
                         f"dtype {rec.model.dtype}, attention {rec.model.attn_implementation})")
    acc = load_config_from_file(str(FSDP_CONFIG))
    fc = acc.fsdp_config
    assert str(acc.distributed_type).endswith("FSDP") and int(fc["fsdp_version"]) == 2, fc
    lines.append(f"fsdp.yaml: FSDP{fc['fsdp_version']}, {fc['fsdp_auto_wrap_policy']}, "
                 f"cpu_ram_efficient_loading={fc['fsdp_cpu_ram_efficient_loading']}")
    lm = meta_model(resolve_model(model), dtype="bfloat16", attn_implementation="sdpa")
    n = sum(p.numel() for p in lm.parameters())
    assert all(p.is_meta for p in lm.parameters()) and not any(b.is_meta for b in lm.buffers())
    lines.append(f"model {model}: {type(lm).__name__}, {n / 1e6:.1f}M parameters built on meta (bf16 "
                 f"{n * 2 / 2**30:.2f} GiB), FSDP wraps {wrap_classes(lm)}, cuda available: "
                 f"{torch.cuda.is_available()}")
    return lines


def summary(run: Path) -> dict[str, Any]:
    f = run / "summary.json"
    return json.loads(f.read_text()) if f.is_file() else {}


def losses(run: Path) -> dict[int, float]:
    f = run / "metrics.jsonl"
    rows = [json.loads(x) for x in f.read_text().splitlines() if x.strip()] if f.is_file() else []
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def run_step(s: dict[str, Any], out: Path, timeout: int) -> dict[str, Any]:
    import importlib.util

    if s.get("needs") and importlib.util.find_spec(s["needs"]) is None:
        return {"status": f"skipped: {s['needs']} not installed", "seconds": 0}
    if s.get("prepare") == "resume":  # resume from step 2 of the first FSDP run, in a fresh folder
        dst = out / "fsdp_resume"
        shutil.rmtree(dst, ignore_errors=True)
        dst.mkdir(parents=True)
        shutil.copytree(out / "fsdp" / "checkpoint-2", dst / "checkpoint-2")
    t0 = time.perf_counter()
    log = out / f"{s['name']}.log"
    try:
        with open(log, "w") as f:
            rc = subprocess.run(s["cmd"], stdout=f, stderr=subprocess.STDOUT, timeout=timeout, cwd=REPO).returncode
    except subprocess.TimeoutExpired:
        rc = "timeout"
    res = {"status": "ok" if rc == 0 else f"FAILED ({rc}; {log.name})", "seconds": round(time.perf_counter() - t0, 1)}
    run = out / s["name"]
    sm = summary(run)
    if sm:
        res["result"] = (f"loss {sm.get('final_loss')}, {sm.get('real_tokens_per_s')} tok/s, "
                         f"{sm.get('precision')}, peak GPU {sm.get('peak_cuda_allocated_mib')} MiB")
    if s["name"] == "fsdp_resume" and rc == 0:
        a, b = losses(out / "fsdp"), losses(run)
        same = all(abs(a[k] - b[k]) <= 1e-4 * max(1.0, abs(a[k])) for k in (3, 4) if k in a and k in b)
        res["result"] = f"steps 3-4 {[b.get(3), b.get(4)]} vs uninterrupted {[a.get(3), a.get(4)]}: " + \
                        ("same" if same else "DIFFERENT")
        if not same:
            res["status"] = "FAILED (resume differs)"
    if s["name"] == "precision" and rc == 0:
        p = json.loads((out / "precision.json").read_text())
        res["result"] = (f"changed share bf16 {p['share_bf16']:.3f} vs fp32 {p['share_fp32']:.3f}; engine 32 "
                         f"streams: forward {p['forward_s']:.2f}s, sampling {p['sampling_s']:.2f}s "
                         f"({p['tokens']} tokens)")
    return res


def precision_step(model: str, out: Path) -> None:
    """Check 5 (own process, on the GPU): changed-weight share of one AdamW step; engine forward vs sampling."""
    import torch

    from instructkit.config.base import load_config
    from instructkit.config.recipe import Recipe
    from instructkit.models import load_model, load_tokenizer
    from instructkit.train import train

    sft, _ = write_data(out)
    tok = load_tokenizer(model)
    shares = {}
    for dtype in ("float32", "bfloat16"):
        lm = load_model(model, dtype=dtype, attn_implementation="sdpa")
        before = {k: v.detach().float().cpu().clone() for k, v in lm.state_dict().items()}
        rec = load_config(Recipe, None, [f"model.name_or_path={model}", f"model.dtype={dtype}", "train.method=full",
                                         "train.lr=2e-5", "train.max_steps=1", "train.warmup_steps=0",
                                         "train.scheduler=constant", "train.progress=false",
                                         "train.tensorboard=false", f"data.paths=[{sft}]", "data.max_length=1024",
                                         f"output_dir={out}/precision_{dtype}"])
        after = train(rec, model=lm, tokenizer=tok).model.state_dict()
        moved = sum(int((after[k].float().cpu() != before[k]).sum()) for k in before)
        shares[dtype] = moved / sum(v.numel() for v in before.values())
        del lm, after
        torch.cuda.empty_cache()
    try:
        from instructkit.lm.engine import Engine
        from instructkit.lm.sampling import SamplingParams
    except ImportError:
        from instructkit.serve.engine import Engine
        from instructkit.serve.sampling import SamplingParams
    lm = load_model(model, dtype="bfloat16", attn_implementation="sdpa").cuda()
    eng = Engine(lm, tok, max_batch_size=32)
    timed = {"forward": 0.0, "sampling": 0.0}

    def timer(name: str, fn: Any) -> Any:
        def wrapped(*a: Any, **k: Any) -> Any:
            torch.cuda.synchronize()
            t = time.perf_counter()
            r = fn(*a, **k)
            torch.cuda.synchronize()
            timed[name] += time.perf_counter() - t
            return r
        return wrapped

    eng._forward, eng._advance = timer("forward", eng._forward), timer("sampling", eng._advance)
    prompts = [tok(f"Question {i}: tell a story about the sea.")["input_ids"] for i in range(32)]
    outs = eng.generate_many([(p, SamplingParams(max_tokens=128, temperature=0.8, top_p=0.95, seed=i,
                                                 ignore_eos=True)) for i, p in enumerate(prompts)])
    (out / "precision.json").write_text(json.dumps({
        "share_fp32": shares["float32"], "share_bf16": shares["bfloat16"], "forward_s": timed["forward"],
        "sampling_s": timed["sampling"], "tokens": sum(len(c.token_ids) for o in outs for c in o.outputs)}))


def table(rows: list[tuple[dict[str, Any], dict[str, Any]]], header: str) -> str:
    lines = [header, "", "| check | step | status | seconds | result / command |", "|---|---|---|---|---|"]
    for s, r in rows:
        detail = r.get("result") or "`" + " ".join(s["cmd"]).replace(str(REPO) + "/", "") + "`"
        lines.append(f"| {s['check']} | {s['name']} | {r['status']} | {r['seconds']} | {detail} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="dry run: no GPU needed, nothing trained")
    ap.add_argument("--model", default="smollm2-135m-instruct", help="alias, HF folder or hub id (1B-8B fits)")
    ap.add_argument("--out", default=str(REPO / "runs" / "gpu_check"))
    ap.add_argument("--timeout", type=int, default=150, help="seconds per step")
    ap.add_argument("--step", choices=["precision"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if args.step == "precision":
        precision_step(args.model, out)
        return 0
    steps = plan(args.model, out)
    if args.check:
        for line in dry_check(args.model, out, steps):
            print(line)
        rows = [(s, {"status": "planned", "seconds": 0}) for s in steps]
        md = table(rows, f"# gpu_check --check (dry run, model {args.model})")
    else:
        import torch
        if not torch.cuda.is_available():
            print("gpu_check: no CUDA device visible (use --check for the dry run)", file=sys.stderr)
            return 2
        name = torch.cuda.get_device_name(0)
        rows = []
        for s in steps:
            r = run_step(s, out, args.timeout)
            rows.append((s, r))
            print(f"{s['name']}: {r['status']} in {r['seconds']}s {r.get('result', '')}", flush=True)
        md = table(rows, f"# gpu_check on {torch.cuda.device_count()} x {name}, model {args.model}, "
                         f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    (out / "gpu_check.md").write_text(md)
    print(md)
    return 0 if args.check or all(r["status"] == "ok" or r["status"].startswith("skipped") for _, r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
