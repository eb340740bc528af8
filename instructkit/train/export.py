"""Merge a LoRA/DoRA adapter into its base model and save a plain HF folder."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from instructkit.errors import InstructkitError


def export_merged(adapter: str | Path, out: str | Path, *, base: str | None = None, dtype: str = "float32") -> Path:
    """``adapter``: a checkpoint/model folder holding ``adapter_config.json``. ``base`` overrides the base
    recorded in it (needed when the base was an in-memory model). QLoRA adapters merge into the
    full-precision base (the 4-bit weights are only a training-time representation)."""
    import json

    from peft import PeftModel

    from instructkit.models import load_model, load_tokenizer

    adapter, out = Path(adapter), Path(out)
    cfg_file = adapter / "adapter_config.json"
    if not cfg_file.is_file():
        raise InstructkitError(f"{adapter}: no adapter_config.json (not a LoRA adapter folder; full fine-tuning "
                               "checkpoints are already plain HF folders)")
    base = base or json.loads(cfg_file.read_text()).get("base_model_name_or_path")
    if not base:
        raise InstructkitError(f"{cfg_file}: records no base model; pass --base")
    model = PeftModel.from_pretrained(load_model(base, dtype=dtype), str(adapter))
    merged = model.merge_and_unload()
    tok = load_tokenizer(str(adapter)) if (adapter / "tokenizer_config.json").is_file() else load_tokenizer(base)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".tmp-{out.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    merged.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out
