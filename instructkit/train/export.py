"""Merge a LoRA/DoRA adapter into its base model and save a plain HF folder."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from instructkit.errors import InstructkitError
from instructkit.outputs import (claim_output_dir, marker_data, readable_modes, write_error, write_errors,
                                 write_marker)


def export_merged(adapter: str | Path, out: str | Path, *, base: str | None = None, dtype: str = "float32",
                  overwrite: bool = False) -> Path:
    """``adapter``: a checkpoint/model folder holding ``adapter_config.json``. ``base`` overrides the base
    recorded in it (needed when the base was an in-memory model). QLoRA adapters merge into the
    full-precision base (the 4-bit weights are only a training-time representation).

    ``out`` must be missing, empty or a previous export (see :mod:`instructkit.outputs`); any other
    non-empty folder (a run folder, the user's files) is refused unless ``overwrite``. It is checked
    before the model loads. The merged model is written into a private temp folder beside ``out``; only
    when it is complete are its files moved into ``out`` one by one (each an atomic ``os.replace``), so a
    failed write (disk full) leaves ``out`` as it was. Nothing else in ``out`` is touched: a file of the
    user's beside the export stays; the only files removed are ones a previous export wrote there (listed
    in its marker) that this export no longer writes (e.g. shards of a larger dtype)."""
    import json

    from peft import PeftModel

    from instructkit.models import load_model, load_tokenizer
    from instructkit.models.card import write_hf_card

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
    previous = marker_data(out) if marker_data(out).get("kind") == "export" else {}
    claim_output_dir(out, "export", overwrite=overwrite)
    model = PeftModel.from_pretrained(load_model(base, dtype=dtype), str(adapter))
    merged = model.merge_and_unload()
    tok = load_tokenizer(str(adapter)) if (adapter / "tokenizer_config.json").is_file() else load_tokenizer(base)
    try:
        tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".tmp-{out.name}-"))  # ours alone: removed whole
    except OSError as e:
        raise write_error(out, e) from None
    try:
        merged.save_pretrained(tmp, safe_serialization=True)
        tok.save_pretrained(tmp)
        write_hf_card(tmp, adapter, base=base, command=f"instructkit export --adapter {adapter} --out {out}")
        readable_modes(tmp)
        _move_into(tmp, out, previous.get("files") or [])
    except write_errors() as e:  # disk full, permission lost
        raise write_error(out, e) from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _move_into(tmp: Path, out: Path, previous: list[str]) -> None:
    """Move every file of ``tmp`` into ``out`` (replacing same-named files) and record them in the marker;
    remove only those files of the previous export (``previous``) that this one does not write."""
    written = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*") if p.is_file())
    for rel in written:
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp / rel, out / rel)
    for rel in set(previous) - set(written):
        stale = out / rel
        if ".." not in Path(rel).parts and stale.is_file():
            stale.unlink()
    write_marker(out, "export", files=written)
