"""Issue 24 item 7: ``export --overwrite`` writes into the folder; it never deletes the user's files."""

from __future__ import annotations

import json
import stat

import pytest

from instructkit.errors import InstructkitError
from instructkit.train.export import export_merged


@pytest.fixture()
def adapter(tmp_path, tiny_model_dir):
    from peft import LoraConfig, get_peft_model

    from instructkit.models import load_model, load_tokenizer

    model = get_peft_model(load_model(tiny_model_dir), LoraConfig(r=4, target_modules=["q_proj"]))
    out = tmp_path / "adapter"
    model.save_pretrained(out)
    load_tokenizer(tiny_model_dir).save_pretrained(out)
    cfg = json.loads((out / "adapter_config.json").read_text())
    assert cfg["base_model_name_or_path"] == str(tiny_model_dir)
    return out


def test_overwrite_keeps_the_users_files(tmp_path, adapter):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("my notes")
    (out / "sub").mkdir()
    (out / "sub" / "data.bin").write_bytes(b"x")
    (out / "config.json").write_text("{}")  # a file the export writes: replaced
    with pytest.raises(InstructkitError, match="--overwrite"):
        export_merged(adapter, out)
    assert (out / "notes.txt").read_text() == "my notes"
    export_merged(adapter, out, overwrite=True)
    assert (out / "notes.txt").read_text() == "my notes"
    assert (out / "sub" / "data.bin").read_bytes() == b"x"
    assert json.loads((out / "config.json").read_text())["model_type"]
    assert (out / "model.safetensors").is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]  # no temp folder left
    # a second export (a previous export's folder, no flag needed) still keeps the user's file
    export_merged(adapter, out)
    assert (out / "notes.txt").read_text() == "my notes"


def test_exported_weights_are_readable_by_others(tmp_path, adapter):
    """Item 15: transformers writes model.safetensors 0600; an export follows the umask like every file."""
    out = export_merged(adapter, tmp_path / "merged")
    mode = stat.S_IMODE((out / "model.safetensors").stat().st_mode)
    assert mode & 0o044 == 0o044, oct(mode)


def test_stale_files_of_a_previous_export_go(tmp_path, adapter):
    out = export_merged(adapter, tmp_path / "merged")
    marker = json.loads((out / ".instructkit").read_text())
    marker["files"].append("model-00002-of-00002.safetensors")  # written by an earlier, larger export
    (out / ".instructkit").write_text(json.dumps(marker))
    (out / "model-00002-of-00002.safetensors").write_bytes(b"old")
    (out / "readme.md").write_text("mine")
    export_merged(adapter, out)
    assert not (out / "model-00002-of-00002.safetensors").exists()
    assert (out / "readme.md").read_text() == "mine"
