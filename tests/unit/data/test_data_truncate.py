"""Truncation policy (data.truncate: right | left_prompt | drop): answers kept, drops located and plotted."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from instructkit.chat import Conversation
from instructkit.data.prepare import prepare_conversations, prepare_dataset


def _long_prompt_file(tmp_path):
    recs = [{"prompt": "word " * 120, "completion": "the answer"},  # the answer lies past 64 tokens
            {"prompt": "short", "completion": "fits"}]
    p = tmp_path / "t.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return p


def test_right_drops_the_cut_answer_and_locates_it(tmp_path, tiny_tokenizer):
    ds, rep = prepare_dataset(_long_prompt_file(tmp_path), tiny_tokenizer, max_length=64, num_proc=1,
                              cache_dir=tmp_path / "c")
    assert len(ds) == 1 and rep.dropped_no_trained == 1 and rep.read == 2
    (ex,) = rep.dropped.examples["no_trained_tokens"]
    assert ex.startswith(f"{tmp_path / 't.jsonl'}:1: ") and "truncate: left_prompt keeps the answer" in ex
    drops = [json.loads(x) for x in open(rep.drops_path)]
    assert drops[0]["where"] == f"{tmp_path / 't.jsonl'}:1" and drops[0]["length"] > 64
    assert rep.dropped_lengths == [drops[0]["length"]]


def test_left_prompt_keeps_the_answer(tmp_path, tiny_tokenizer):
    ds, rep = prepare_dataset(_long_prompt_file(tmp_path), tiny_tokenizer, max_length=64, num_proc=1,
                              use_cache=False, truncate="left_prompt")
    assert len(ds) == 2 and rep.truncated == 1 and rep.dropped_total == 0
    row = ds[0]
    assert row["length"] == 64 and row["truncated"]
    trained = [t for t, l in zip(row["input_ids"], row["labels"]) if l != -100]
    assert tiny_tokenizer.decode(trained).startswith("the answer")  # the whole answer is still trained


def test_drop_policy_counts_too_long(tmp_path, tiny_tokenizer):
    convs = [Conversation.from_pairs("word " * 120, "a", source="mem", line=7),
             Conversation.from_pairs("hi", "there", source="mem", line=8)]
    ds, rep = prepare_conversations(convs, tiny_tokenizer, max_length=64, truncate="drop")
    assert len(ds) == 1 and rep.dropped_too_long == 1 and rep.read == 2
    assert rep.dropped.examples["too_long"][0].startswith("mem:7: ")
    assert rep.read == rep.examples + rep.skipped.total + rep.dropped_total


def test_bad_policy_and_max_length_are_errors(tmp_path, tiny_tokenizer, tiny_model_dir):
    from instructkit.data.cli import app
    from instructkit.errors import InstructkitError

    with pytest.raises(InstructkitError, match="unknown truncate 'middle'"):
        prepare_dataset(_long_prompt_file(tmp_path), tiny_tokenizer, truncate="middle", use_cache=False)
    res = CliRunner().invoke(app, ["inspect", str(_long_prompt_file(tmp_path)), "--model", tiny_model_dir,
                                   "--max-length", "-5"])
    assert res.exit_code == 2 and "greater than or equal to 1" in res.output  # rejected, not "cut 5 tokens"


def test_inspect_plot_shows_drops(tmp_path, tiny_model_dir, monkeypatch):
    from instructkit.data.cli import app

    monkeypatch.setenv("INSTRUCTKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("COLUMNS", "300")
    png = tmp_path / "len.png"
    seen = {}
    import instructkit.data.inspect as insp
    real = insp.length_histogram

    def spy(result, out, title=""):
        seen["dropped"] = list(result.report.dropped_lengths)
        return real(result, out, title)

    monkeypatch.setattr(insp, "length_histogram", spy)
    res = CliRunner().invoke(app, ["inspect", str(_long_prompt_file(tmp_path)), "--model", tiny_model_dir,
                                   "--max-length", "64", "--plot", str(png), "--n", "0"])
    assert res.exit_code == 0, res.output
    assert png.stat().st_size > 1000 and len(seen["dropped"]) == 1 and seen["dropped"][0] > 64
    assert "dropped (no_trained_tokens): 1, e.g. " in res.output and "t.jsonl:1" in res.output
