"""Issue 24 item 15: any failure while writing a checkpoint is one located line (the last good one is kept);
a failed ``train`` leaves no empty run folder; checkpoints share the unchanged tokenizer files."""

from __future__ import annotations

import random
import sys

import pytest
import torch

from instructkit.chat import Conversation
from instructkit.config.base import load_config
from instructkit.config.recipe import Recipe
from instructkit.errors import InstructkitError
from instructkit.train import train
from instructkit.train.checkpoint import list_checkpoints

WORDS = "the a of to and in is it you that he was for on are with as his they be at one have this".split()


def convs(n=16, seed=0):
    rng = random.Random(seed)
    return [Conversation.from_pairs(" ".join(rng.choices(WORDS, k=rng.randint(2, 10))),
                                    " ".join(rng.choices(WORDS[:6], k=rng.randint(2, 8)))) for _ in range(n)]


def recipe(out, model_dir, *extra):
    return load_config(Recipe, None, [f"model.name_or_path={model_dir}", f"output_dir={out}", "train.progress=false",
                                      "train.tensorboard=false", "train.log_every=1", "train.pack_tokens=64",
                                      "data.max_length=64", "train.max_steps=4", "train.save_every=2", *extra])


def _fail_second(monkeypatch, target, attr, exc):
    real, calls = getattr(target, attr), {"n": 0}

    def failing(*a, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise exc
        return real(*a, **kw)
    monkeypatch.setattr(target, attr, failing)


@pytest.mark.parametrize("disk_full", [True, False])
def test_torch_enforce_fail_is_one_line_naming_the_checkpoint(tmp_path, tiny_model_dir, monkeypatch, disk_full):
    import instructkit.train.checkpoint as ck

    real_save = torch.save

    def save(obj, f, *a, **kw):
        if str(f).endswith("optimizer.pt") and "checkpoint-4" in str(f):
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 4096 vs 2048")
        return real_save(obj, f, *a, **kw)
    monkeypatch.setattr(ck.torch, "save", save)
    if disk_full:
        import collections
        usage = collections.namedtuple("usage", "total used free")
        monkeypatch.setattr(ck.shutil, "disk_usage", lambda p: usage(10**9, 10**9, 0))
    run = tmp_path / "r"
    with pytest.raises(InstructkitError) as ei:
        train(recipe(run, tiny_model_dir), examples=convs())
    msg = str(ei.value)
    cause = "no space left on device" if disk_full else "RuntimeError: [enforce fail at inline_container.cc:672]"
    assert msg.startswith(f"{run / 'checkpoint-4'}: cannot write: {cause}"), msg
    assert msg.endswith(f"the last good checkpoint {run / 'checkpoint-2'} is kept") and "\n" not in msg
    assert [p.name for p in list_checkpoints(run)] == ["checkpoint-2"] and not list(run.glob(".tmp-*"))


def test_tokenizers_plain_exception_is_one_line(tmp_path, tiny_model_dir, monkeypatch):
    from instructkit.models import load_tokenizer

    tok = load_tokenizer(str(tiny_model_dir))
    _fail_second(monkeypatch, tok, "save_pretrained", Exception("No space left on device (os error 28)"))
    run = tmp_path / "t"
    with pytest.raises(InstructkitError, match=r"checkpoint-4: cannot write: Exception: No space left on device"):
        train(recipe(run, tiny_model_dir), examples=convs(), tokenizer=tok)
    assert [p.name for p in list_checkpoints(run)] == ["checkpoint-2"]


def test_lora_checkpoints_share_the_tokenizer_file(tmp_path, tiny_model_dir):
    run = tmp_path / "lora"
    train(recipe(run, tiny_model_dir, "train.method=lora", "train.save_every=1", "train.keep_last=3"),
          examples=convs())
    c = list_checkpoints(run)
    assert [p.name for p in c] == ["checkpoint-2", "checkpoint-3", "checkpoint-4"]
    inodes = {(p / "tokenizer.json").stat().st_ino for p in c}
    assert len(inodes) == 1, "every checkpoint holds its own copy of tokenizer.json"
    assert len({(p / "adapter_model.safetensors").stat().st_ino for p in c}) == 3


def _main(monkeypatch, capsys, *args):
    from instructkit.cli import main
    monkeypatch.setattr(sys, "argv", ["instructkit", *args])
    with pytest.raises(SystemExit) as e:
        main()
    out = capsys.readouterr()
    return e.value.code or 0, out.out + out.err


def test_failed_train_leaves_no_empty_run_folder(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    (tmp_path / "r.yaml").write_text(f"output_dir: {run}\nmodel:\n  name_or_path: {tmp_path / 'no-such-model'}\n"
                                     f"data:\n  paths: [{tmp_path / 'd.jsonl'}]\n")
    rc, out = _main(monkeypatch, capsys, "train", "--config", str(tmp_path / "r.yaml"))
    assert rc == 2 and "Traceback" not in out, out
    assert not run.exists(), sorted(p.name for p in run.iterdir())
