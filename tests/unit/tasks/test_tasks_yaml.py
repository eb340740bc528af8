"""User task YAML: sources, field mapping, include, errors naming the file and key."""

import csv
import json

import pytest

from instructkit.data.tasks import load_task, load_tasks
from instructkit.data.tasks.formats import render_examples
from instructkit.errors import ConfigError

TASK = """
id: my_qa
cluster: qa
metric: exact_match
source: {{files: {{train: train.{ext}, validation: val.{ext}}}}}
fields: {{question: q, answer: a}}
templates:
  - {{id: t01, input: "Q: {{{{question}}}}", target: "{{{{answer}}}}"}}
  - {{id: t02, input: "Answer {{{{question}}}}", target: "{{{{answer}}}}"}}
"""


def _write(tmp_path, ext):
    rows = [{"q": f"what is {i}+1?", "a": str(i + 1)} for i in range(8)]
    for name in ("train", "val"):
        p = tmp_path / f"{name}.{ext}"
        if ext == "jsonl":
            p.write_text("".join(json.dumps(r) + "\n" for r in rows))
        elif ext == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq
            pq.write_table(pa.Table.from_pylist(rows), p)
        else:
            with p.open("w", newline="") as f:
                w = csv.DictWriter(f, ["q", "a"])
                w.writeheader()
                w.writerows(rows)
    y = tmp_path / "my_qa.yaml"
    y.write_text(TASK.format(ext=ext))
    return y


@pytest.mark.parametrize("ext", ["jsonl", "csv", "parquet"])
def test_local_file_task(tmp_path, ext):
    t = load_task(str(_write(tmp_path, ext)))
    assert t.splits == ["train", "validation"] and t.ref == t.path
    rows = t.load_split("validation")
    assert rows[2]["question"] == "what is 2+1?"
    ex = render_examples(t, "validation", "few_shot", k=2, limit=3, templates="one")
    assert ex[0].target == "1" and ex[0].prompt.count("what is") == 3


def test_load_from_disk_task(tmp_path):
    from datasets import Dataset, DatasetDict
    DatasetDict({"train": Dataset.from_list([{"q": "a", "a": "b"}] * 3),
                 "validation": Dataset.from_list([{"q": "c", "a": "d"}])}).save_to_disk(str(tmp_path / "ds"))
    y = tmp_path / "t.yaml"
    y.write_text(TASK.format(ext="x").replace("{files: {train: train.x, validation: val.x}}", "{disk: ds}"))
    assert load_task(str(y)).load_split("validation")[0]["answer"] == "d"


def test_hub_source_offline_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    y = tmp_path / "t.yaml"
    y.write_text(TASK.format(ext="x").replace("{files: {train: train.x, validation: val.x}}", "{hub: super_glue}"))
    with pytest.raises(ConfigError, match="offline"):
        load_task(str(y)).load_split("train")


@pytest.mark.parametrize("edit,key", [
    (lambda s: s.replace("metric: exact_match", "metric: bleu"), "metric"),
    (lambda s: s.replace("cluster: qa\n", "cluster: qa\ncolour: red\n"), "colour"),
    (lambda s: s.replace('input: "Answer', 'inptu: "Answer'), "templates[1].inptu"),
    (lambda s: s.replace("{{answer}}\"}\n", "{{answer\"}\n", 1), "templates[0].target"),
    (lambda s: s.replace("id: t02", "id: t01"), "templates"),
])
def test_validation_errors_name_file_and_key(tmp_path, edit, key):
    y = _write(tmp_path, "jsonl")
    y.write_text(edit(y.read_text()))
    with pytest.raises(ConfigError) as e:
        load_task(str(y))
    assert str(y) in str(e.value) and f"'{key}'" in str(e.value)


def test_include_and_gsm8k_preprocess(tmp_path):
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(
        {"question": f"Q{i}?", "answer": "She sold 48/2 = <<48/2=24>>24 clips.\n#### 1,024"}) + "\n" for i in range(20)))
    y = tmp_path / "gsm.yaml"
    y.write_text("id: gsm\ncluster: arithmetic\nsource: {files: {train: train.jsonl}}\npreprocess: gsm8k\n"
                 "rationale: rationale\ninclude: arith_add_sub\n")
    t = load_task(str(y))
    assert len(t.templates) == 10 and t.templates[0].id == "gsm/t01" and t.has_rationale
    # only a training file: a deterministic share is carved out as the eval split (issue #25)
    assert t.eval_split == "heldout" and t.split_note
    train, held = t.load_split("train"), t.load_split("heldout")
    assert train and len(train) + len(held) == 20
    row = train[0]
    assert row["answer"] == "1024" and row["rationale"] == "She sold 48/2 = 24 clips."
    e = render_examples(t, "train", "zero_shot_cot", templates="one", inverted=False)[0]
    assert e.target == "She sold 48/2 = 24 clips. So the answer is 1024."


def test_load_tasks_folder_and_builtin(tmp_path):
    _write(tmp_path, "jsonl")
    assert [t.id for t in load_tasks([str(tmp_path)])] == ["my_qa"]
    assert len(load_tasks(["builtin", "nli_facts"])) == 24
    with pytest.raises(ConfigError, match="unknown task"):
        load_task("no_such_task")
