"""`train` says what the data stage dropped before training, and summary.json has one set of counts."""

from __future__ import annotations

import json
import logging

from instructkit.config.base import load_config
from instructkit.config.recipe import Recipe
from instructkit.train import train


def test_train_prints_data_report_and_summary_agrees(tmp_path, tiny_model_dir, caplog):
    recs = [{"prompt": f"say {i}", "completion": f"ok {i}"} for i in range(6)]
    recs += [{"prompt": "x", "completion": ""},                             # skipped: empty answer
             {"prompt": "word " * 100, "completion": "cut away"},           # dropped: answer truncated away
             {"prompt": "long " * 20, "completion": "kept but truncated " * 3}]
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in recs))
    r = load_config(Recipe, None, [f"model.name_or_path={tiny_model_dir}", f"output_dir={tmp_path / 'run'}",
                                   f"data.paths=[{data}]", "data.on_error=skip", "data.max_length=40",
                                   "data.num_proc=1", f"data.cache_dir={tmp_path / 'cache'}", "train.max_steps=1",
                                   "train.progress=false", "train.tensorboard=false", "train.pack_tokens=64"])
    with caplog.at_level(logging.INFO, logger="instructkit.train"):
        res = train(r)
    text = caplog.text
    assert "data: 9 records read: 7 kept, 1 skipped, 1 dropped, 1 truncated (truncate: right)" in text
    assert "skipped: empty_assistant 1" in text and "dropped: no_trained_tokens 1" in text
    d = json.loads((tmp_path / "run" / "summary.json").read_text())["data"]
    assert (d["read"], d["kept"], d["skipped"], d["dropped"], d["truncated"]) == (9, 7, 1, 1, 1)
    assert "prepare" not in d and d["read"] == d["kept"] + d["skipped"] + d["dropped"]
    assert res.summary["data"] == d
