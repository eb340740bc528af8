"""The model card (``README.md``) written into every exported folder, laid out like a hub model card.

Everything comes from files, never from the train or eval code: the adapter's ``adapter_config.json``,
the run folder's ``recipe.yaml`` and ``summary.json`` (the model folder is ``RUN/model``, ``RUN/best``
or ``RUN/checkpoint-N``), and any eval ``results.json`` inside the run folder (or passed explicitly).
Missing pieces are stated as missing, not invented.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

_HPARAMS = ("objective", "method", "lr", "epochs", "max_steps", "micro_batch_size", "grad_accum", "packing",
            "pack_tokens", "optimizer", "weight_decay", "scheduler", "warmup_ratio", "warmup_steps", "max_grad_norm",
            "gradient_checkpointing", "seed")


def _hparams(train: dict[str, Any]) -> dict[str, Any]:
    """The keys a reader needs to reproduce the method; sub-sections only when the method uses them."""
    out = {k: train[k] for k in _HPARAMS if k in train}
    if train.get("method", "full") != "full" and train.get("lora"):
        out["lora"] = train["lora"]
    if train.get("objective") == "dpo" and train.get("dpo"):
        out["dpo"] = train["dpo"]
    if train.get("muppet"):
        out["muppet"] = train["muppet"]
    return out


def run_folder(model_dir: str | Path) -> Path | None:
    """The training run a model folder came from (it holds ``recipe.yaml``), or None."""
    p = Path(model_dir)
    for cand in (p, p.parent):
        if (cand / "recipe.yaml").is_file() or (cand / "summary.json").is_file():
            return cand
    return None


def _read_yaml(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def run_recipe(model_dir: str | Path) -> dict[str, Any]:
    run = run_folder(model_dir)
    return _read_yaml(run / "recipe.yaml") if run else {}


def _flat(d: dict[str, Any], prefix: str = "") -> Iterable[tuple[str, Any]]:
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _flat(v, f"{prefix}{k}.")
        elif v is not None and v != [] and v != {}:
            yield f"{prefix}{k}", v


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        return ", ".join(str(x) for x in v)
    return str(v).replace("|", "\\|").replace("\n", " ")


def eval_rows(results: Iterable[Path]) -> list[str]:
    rows = []
    for path in results:
        res = _read_json(path)
        for task, t in (res.get("tasks") or {}).items():
            ci = t.get("ci") or [None, None]
            ci_s = f"[{ci[0]:.3f}, {ci[1]:.3f}]" if None not in ci else "n/a"
            score = t.get("score")
            rows.append(f"| {task} | {t.get('main_metric')} | {score:.3f} | {ci_s} | {t.get('n')} | "
                        f"{path.parent.name} |" if isinstance(score, (int, float)) else
                        f"| {task} | {t.get('main_metric')} | n/a | n/a | {t.get('n')} | {path.parent.name} |")
    return rows


def find_results(model_dir: str | Path) -> list[Path]:
    run = run_folder(model_dir)
    if run is None:
        return []
    return sorted(p for p in run.glob("*/results.json")) + sorted(run.glob("*/*/results.json"))


def model_card(model_dir: str | Path | None, *, base: str | None, command: str, export: dict[str, Any],
               results: Iterable[Path] | None = None) -> str:
    """Markdown for an exported model. ``export``: format, files, quantization... of this export."""
    recipe = run_recipe(model_dir) if model_dir else {}
    run = run_folder(model_dir) if model_dir else None
    summary = _read_json(run / "summary.json") if run else {}
    model_cfg, train_cfg, data_cfg = (recipe.get(k) or {} for k in ("model", "train", "data"))
    base = base or model_cfg.get("name") or "unknown"
    name = Path(str(model_dir)).resolve().name if model_dir else base
    out = ["---", "library_name: " + ("gguf" if export.get("format") == "gguf" else "transformers"),
           f"base_model: {base}", "tags: [instructkit" + (", gguf" if export.get("format") == "gguf" else "") + "]",
           "---", "", f"# {name}", "",
           (f"Fine-tuned from **{base}** with [instructkit](https://github.com/instructkit/instructkit)"
            + (f" (method: {train_cfg.get('method')})." if train_cfg.get("method") else ".")) if recipe else
           f"Exported with instructkit from **{base}**; no training run (recipe.yaml) was found beside it.", ""]
    out += ["## Files", ""] + [f"- `{f}`: {what}" for f, what in export.get("files", {}).items()] + [""]
    out += ["## Training data", ""]
    paths = data_cfg.get("paths") or data_cfg.get("mixture") or data_cfg.get("path")
    out.append(f"- sources: {_fmt(paths) if paths else 'not recorded'}")
    data = summary.get("data") or {}
    if data:
        counts = {k: data[k] for k in ("read", "kept", "skipped", "dropped", "truncated", "rows", "examples_used",
                                       "tokens", "trained_tokens") if k in data}
        out.append("- counts: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
        for k in ("skipped_by_reason", "dropped_by_reason"):
            if data.get(k):
                out.append(f"- {k.replace('_', ' ')}: " + ", ".join(f"{a} {b}" for a, b in data[k].items()))
    else:
        out.append("- counts: no summary.json found beside the model")
    out += ["", "## Method and hyper-parameters", ""]
    if train_cfg:
        out += ["| key | value |", "|---|---|"]
        out += [f"| {k} | {_fmt(v)} |" for k, v in _flat(_hparams(train_cfg))]
        out += [f"| {k} | {_fmt(recipe[k])} |" for k in ("seed",) if k in recipe]
        if model_cfg.get("chat_template"):
            out.append(f"| chat_template | {_fmt(model_cfg['chat_template'])} |")
    else:
        out.append("No recipe.yaml beside the model: hyper-parameters not recorded.")
    for k in ("final_loss", "train_time_s", "hardware"):
        if k in summary:
            out.append(f"\n- {k.replace('_', ' ')}: {_fmt(summary[k]) if not isinstance(summary[k], dict) else ', '.join(f'{a}={b}' for a, b in summary[k].items())}")
    out += ["", "## Evaluation", ""]
    rows = eval_rows(results if results is not None else find_results(model_dir) if model_dir else [])
    if rows:
        out += ["| task | metric | score | 95% CI | n | run |", "|---|---|---|---|---|---|"] + rows
    else:
        out.append("No eval results (results.json) found in the run folder.")
    out += ["", "## Reproduce", "", "```bash"]
    if run and (run / "recipe.yaml").is_file():
        out.append(f"instructkit train --config {run / 'recipe.yaml'}")
    out += [command, "```", ""]
    if export.get("usage"):
        out += ["## Use", "", export["usage"], ""]
    return "\n".join(out)


def write_hf_card(folder: str | Path, model_dir: str | Path, *, base: str | None, command: str) -> Path:
    """README.md for a merged Hugging Face export (written into ``folder`` before it replaces --out)."""
    folder = Path(folder)
    files = {p.name: "weights" if p.suffix == ".safetensors" else "config / tokenizer"
             for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith(".")}
    usage = ("```python\nfrom transformers import AutoModelForCausalLM, AutoTokenizer\n"
             "model = AutoModelForCausalLM.from_pretrained(FOLDER); tok = AutoTokenizer.from_pretrained(FOLDER)\n```\n"
             "GGUF for llama.cpp / Ollama: `instructkit export --adapter FOLDER --out GGUF_DIR --format gguf`")
    path = folder / "README.md"
    path.write_text(model_card(model_dir, base=base, command=command,
                               export={"format": "hf", "files": files, "usage": usage}))
    return path
