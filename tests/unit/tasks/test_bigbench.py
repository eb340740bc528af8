"""BIG-bench task.json -> task-system tasks (the T0 held-out experiment's evaluation data)."""

import json
import os
from collections import Counter
from pathlib import Path

import pytest

from instructkit.data.tasks import load_task
from instructkit.data.tasks.bigbench import T0_HELD_OUT, find_tasks, prepare_bigbench, read_task, split_rows
from instructkit.errors import ConfigError, DataError


def _write(folder: Path, name: str, spec: dict) -> Path:
    (folder / name).mkdir(parents=True, exist_ok=True)
    p = folder / name / "task.json"
    p.write_text(json.dumps(spec))
    return p


def _mc_task(n: int = 40) -> dict:
    # the correct choice is always listed first, as in several real BIG-bench tasks
    return {"name": "toy_mc", "description": "toy", "keywords": ["zero-shot"],
            "task_prefix": "Answer the question.\n", "append_choices_to_input": True,
            "examples": [{"input": f"Is {i} even?", "target_scores": {"yes" if i % 2 == 0 else "no": 1,
                                                                     "no" if i % 2 == 0 else "yes": 0}}
                         for i in range(n)]
            + [{"input": "tie?", "target_scores": {"a": 1, "b": 1}},        # no single best choice
               {"input": "Is 0 even?", "target_scores": {"yes": 1, "no": 0}}]}  # duplicate


def test_read_renders_bigbench_format_and_counts_skips(tmp_path):
    t = read_task(_write(tmp_path, "toy_mc", _mc_task()))
    assert len(t.rows) == 40
    assert t.skipped == Counter({"no_single_best_choice": 1, "duplicate_example": 1})
    r = t.rows[3]
    assert r["prompt"].startswith("Answer the question.\n\nQ: Is 3 even?\n  choice: ")
    assert r["prompt"].endswith("\nA:")
    assert r["choices"][r["label"]] == "no"
    # choices are shuffled per example: the gold answer is not always first
    assert 0.2 < sum(r["label"] == 0 for r in t.rows) / len(t.rows) < 0.8
    assert read_task(tmp_path / "toy_mc" / "task.json").rows == t.rows  # deterministic


def test_splits_are_disjoint_and_yaml_loads(tmp_path):
    _write(tmp_path / "tasks", "toy_mc", _mc_task())
    [yml] = prepare_bigbench(tmp_path / "tasks", ["toy_mc"], tmp_path / "out", eval_n=15)
    task = load_task(str(yml))
    train, val = task.load_split("train"), task.load_split("validation")
    assert len(val) == 15 and len(train) == 25
    assert not {r["input"] for r in train} & {r["input"] for r in val}
    prompt, target, choices = task.templates[0].render(val[0])
    assert prompt == val[0]["prompt"] and target == val[0]["choices"][val[0]["label"]] and choices == val[0]["choices"]
    # at most half of a small task goes to evaluation, so an oracle has rows to train on
    tr, va = split_rows(read_task(tmp_path / "tasks" / "toy_mc" / "task.json").rows, eval_n=1000)
    assert len(va) == 20 and len(tr) == 20


def test_subtasks_and_errors(tmp_path):
    _write(tmp_path, "parent", {"name": "parent", "description": "has subtasks"})
    _write(tmp_path / "parent", "sub", _mc_task(6))
    found = find_tasks(tmp_path)
    assert set(found) == {"parent", "parent/sub"}
    with pytest.raises(ConfigError, match="parent/<subtask>"):
        read_task(found["parent"], "parent")
    assert read_task(found["parent/sub"], "parent/sub").rows
    with pytest.raises(ConfigError, match="no BIG-bench task"):
        prepare_bigbench(tmp_path, ["missing"], tmp_path / "out")
    bad = tmp_path / "bad" / "task.json"
    bad.parent.mkdir()
    bad.write_text('{"name": "bad",\n "examples": [}')
    with pytest.raises(DataError) as e:
        read_task(bad)
    assert e.value.line == 2 and str(bad) in str(e.value)
    gen = _write(tmp_path, "gen", {"name": "gen", "examples": [{"input": "x", "target": "y"}]})
    with pytest.raises(DataError, match="not multiple choice") as e:
        read_task(gen)
    assert e.value.field == "examples[0].target_scores"


BIGBENCH = os.environ.get("INSTRUCTKIT_BIGBENCH")


@pytest.mark.skipif(not BIGBENCH or not Path(BIGBENCH).is_dir(),
                    reason="set INSTRUCTKIT_BIGBENCH to the unpacked bigbench sdist (pip download --no-deps "
                           "--no-binary :all: bigbench)")
def test_real_sdist_held_out_tasks(tmp_path):
    found = find_tasks(BIGBENCH)
    present = [n for n in T0_HELD_OUT if n in found]
    assert {"strategyqa", "winowhy", "vitaminc_fact_verification"} <= set(present)
    for name in ("strategyqa", "winowhy"):
        t = read_task(found[name], name)
        assert len(t.rows) > 2000
        labels = Counter(r["label"] for r in t.rows)
        assert max(labels.values()) / len(t.rows) < 0.6, labels
    [yml] = prepare_bigbench(BIGBENCH, ["strategyqa"], tmp_path, eval_n=250)
    assert len(load_task(str(yml)).load_split("validation")) == 250
