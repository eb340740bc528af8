from pathlib import Path

import pytest

from instructkit.config import describe, load_config, parse_overrides
from instructkit.config.recipe import Recipe
from instructkit.errors import ConfigError


def test_yaml_then_overrides(tmp_path: Path):
    f = tmp_path / "r.yaml"
    f.write_text("name: demo\nmodel:\n  dtype: bfloat16\ntrain:\n  lr: 0.001\n")
    r = load_config(Recipe, f, ["train.lr=1e-4", "data.paths=[a.jsonl, b.jsonl]", "seed=3"])
    assert r.name == "demo" and r.model.dtype == "bfloat16"
    assert r.train.lr == pytest.approx(1e-4) and r.data.paths == ["a.jsonl", "b.jsonl"] and r.seed == 3


@pytest.mark.parametrize("override,needle", [
    (["train.no_such_key=1"], "unknown key 'train.no_such_key'"),
    (["train.lr=fast"], "key 'train.lr'"),
    (["model.dtype=int3"], "key 'model.dtype'"),
    (["nosection.x=1"], "unknown key 'nosection'"),
    (["train.lr"], "not of the form"),
])
def test_errors_name_the_key(override, needle):
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.").replace("(", r"\(")):
        load_config(Recipe, None, override)


def test_unknown_key_in_file_names_file_and_key(tmp_path: Path):
    f = tmp_path / "bad.yaml"
    f.write_text("train:\n  lrr: 1\n")
    with pytest.raises(ConfigError) as e:
        load_config(Recipe, f)
    assert "bad.yaml" in str(e.value) and "train.lrr" in str(e.value)


def test_every_key_documented():
    rows = describe(Recipe)
    assert any(k == "train.lr" for k, *_ in rows)
    undocumented = [k for k, _t, _d, doc in rows if not doc.strip()]
    assert undocumented == []


def test_override_value_parsing():
    assert parse_overrides(["a=1", "b=1e-4", "c=true", "d=[1, 2]", "e=text", "f=null"]) == [
        ("a", 1), ("b", 1e-4), ("c", True), ("d", [1, 2]), ("e", "text"), ("f", None)]
