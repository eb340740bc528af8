"""Small user-facing faults: --version, YAML duplicates/empty files/bad values, recipe-relative paths, help."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from instructkit.config.base import load_config
from instructkit.config.recipe import Recipe
from instructkit.errors import ConfigError

REPO = Path(__file__).resolve().parents[3]


def _main(monkeypatch, capsys, *args):
    from instructkit.cli import main

    monkeypatch.setattr(sys, "argv", ["instructkit", *args])
    with pytest.raises(SystemExit) as e:
        main()
    out = capsys.readouterr()
    return e.value.code or 0, out.out + out.err


def test_version(monkeypatch, capsys):
    from instructkit import __version__

    rc, out = _main(monkeypatch, capsys, "--version")
    assert rc == 0 and out.strip() == __version__


@pytest.mark.parametrize("text, message", [
    ("train:\n  lr: 1.0e-4\n  epochs: 1\n  lr: 3.0e-4\n", r"r.yaml:4: duplicate key 'lr' \(first set on line 2\)"),
    ("", "the file is empty"),
    ("# nothing but a comment\n", "the file is empty"),
    ("train:\n  lr: -1\n", r"key 'train.lr': Input should be greater than 0"),
])
def test_yaml_faults_are_config_errors(tmp_path, text, message):
    (tmp_path / "r.yaml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(Recipe, tmp_path / "r.yaml")


def test_recipe_paths_are_relative_to_the_recipe(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # anywhere but the repository
    r = load_config(Recipe, REPO / "recipes" / "t0.yaml")
    assert Path(r.mix.t0_dirs[0]) == REPO.parent / "shared" / "data" / "t0_train"
    assert Path(r.mix.promptsource_dir) == REPO.parent / "shared" / "data" / "promptsource_templates"
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "r.yaml").write_text("data:\n  paths: [./d.jsonl, plain.jsonl]\n")
    assert load_config(Recipe, tmp_path / "sub" / "r.yaml").data.paths == [str(tmp_path / "sub" / "d.jsonl"),
                                                                          "plain.jsonl"]


def test_eval_help_lists_overrides_and_data_dir_and_judge_keeps_verdict():
    from instructkit.cli import app

    out = CliRunner().invoke(app, ["eval", "--help"], env={"COLUMNS": "200"}).output
    assert "--data-dir" in out and "eval.data_dir" in out and "eval.limit" in out
    judge = CliRunner().invoke(app, ["eval", "judge", "--help"], env={"COLUMNS": "200"}).output
    assert "[[verdict]]" in judge


def test_missing_gsm8k_file_says_where_to_point(tmp_path):
    from instructkit.errors import InstructkitError
    from instructkit.eval.benchmarks import load_gsm8k

    with pytest.raises(InstructkitError, match=r"GSM8K file not found: .*gsm8k/test.jsonl; pass gsm8k:PATH.*--data-dir"):
        load_gsm8k(data_dir=tmp_path)


def test_eval_and_mix_refuse_a_foreign_out_folder(tmp_path, monkeypatch, capsys):
    import json

    import instructkit.eval.cli as ecli

    monkeypatch.setattr(ecli, "make_lm", lambda *a, **k: pytest.fail("must stop before loading the model"))
    gsm = tmp_path / "test.jsonl"
    gsm.write_text(json.dumps({"question": "1+1?", "answer": "#### 2"}) + "\n")
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.md").write_text("keep me")
    rc, text = _main(monkeypatch, capsys, "eval", "--model", "x", "--tasks", f"gsm8k:{gsm}", "--fmt", "zero_shot",
                     "--out", str(out))
    assert rc == 2 and "not empty and was not written by instructkit (notes.md)" in text and "--overwrite" in text
    rc, text = _main(monkeypatch, capsys, "data", "mix", "--out", str(out))
    assert rc == 2 and "refusing to write the mix output there" in text
    assert (out / "notes.md").read_text() == "keep me"
