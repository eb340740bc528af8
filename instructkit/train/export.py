"""Merge a LoRA/DoRA adapter into its base model and save a plain HF folder."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from instructkit.errors import InstructkitError
from instructkit.outputs import MARKER, claim_output_dir, write_error, write_errors


def export_merged(adapter: str | Path, out: str | Path, *, base: str | None = None, dtype: str = "float32",
                  overwrite: bool = False) -> Path:
    """``adapter``: a checkpoint/model folder holding ``adapter_config.json``. ``base`` overrides the base
    recorded in it (needed when the base was an in-memory model). QLoRA adapters merge into the
    full-precision base (the 4-bit weights are only a training-time representation).

    ``out`` must be missing, empty or a previous export (see :mod:`instructkit.outputs`); any other
    non-empty folder (a run folder, the user's files) is refused unless ``overwrite``. It is checked
    before the model loads; the merged model is written into a ``.tmp-`` folder that replaces ``out`` only
    when complete, and is removed when a write fails (disk full), leaving ``out`` as it was."""
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
    if out.resolve() == adapter.resolve() or adapter.resolve().is_relative_to(out.resolve()):
        raise InstructkitError(f"{out}: the export folder holds the adapter {adapter}; choose another --out")
    claim_output_dir(out, "export", overwrite=overwrite)
    model = PeftModel.from_pretrained(load_model(base, dtype=dtype), str(adapter))
    merged = model.merge_and_unload()
    tok = load_tokenizer(str(adapter)) if (adapter / "tokenizer_config.json").is_file() else load_tokenizer(base)
    tmp = out.parent / f".tmp-{out.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        merged.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        shutil.copy2(out / MARKER, tmp / MARKER)
    except write_errors() as e:  # disk full, permission lost
        shutil.rmtree(tmp, ignore_errors=True)
        raise write_error(out, e) from None
    shutil.rmtree(out)
    os.replace(tmp, out)
    return out
