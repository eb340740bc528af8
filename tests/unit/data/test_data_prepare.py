"""prepare_dataset / prepare_conversations: rows equal the renderer's, counts, the fingerprint cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from instructkit.chat import Conversation, render
from instructkit.data import prepare as prep
from instructkit.data import render_rows
from instructkit.data.prepare import prepare_conversations, prepare_dataset
from instructkit.errors import DataError


def pc_file(path: Path, n: int, bad_every: int = 0) -> Path:
    lines = []
    for i in range(n):
        if bad_every and i % bad_every == bad_every - 1:
            lines.append(json.dumps({"prompt": f"q{i}", "completion": ""}))  # empty assistant turn
        else:
            lines.append(json.dumps({"prompt": f"What is {i} plus one?", "completion": f"{i + 1}<|endoftext|>"}))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_rows_match_render_and_report(tmp_path, tiny_tokenizer):
    path = pc_file(tmp_path / "d.jsonl", 30, bad_every=10)
    ds, rep = prepare_dataset(path, tiny_tokenizer, cache_dir=tmp_path / "cache", num_proc=1, on_error="skip")
    assert len(ds) == 27 and rep.examples == 27 and rep.read == 30 == rep.examples + rep.skipped.total + rep.dropped_total
    assert rep.skipped.counts == {"empty_assistant": 3}
    assert set(ds.column_names) >= {"input_ids", "labels", "length", "n_trained", "source", "line"}
    row = ds[0]
    ref = render(Conversation.from_pairs("What is 0 plus one?", "1"), tiny_tokenizer)
    assert row["input_ids"] == ref.input_ids and row["labels"] == ref.labels
    assert row["length"] == len(ref.input_ids) and row["n_trained"] == ref.n_trained
    assert (row["source"], row["line"]) == (str(path), 1)
    assert rep.tokens == sum(ds["length"]) and rep.trained_tokens == sum(ds["n_trained"])
    with pytest.raises(DataError, match=r"d.jsonl:10: field 'completion'"):
        prepare_dataset(path, tiny_tokenizer, cache_dir=tmp_path / "cache2", num_proc=1)
    assert not list((tmp_path / "cache2").glob("*/report.json"))  # a failed build leaves no cache


def test_truncation_and_dropped_are_counted(tmp_path, tiny_tokenizer):
    path = pc_file(tmp_path / "d.jsonl", 5)
    ids = render(Conversation.from_pairs("What is 0 plus one?", "1"), tiny_tokenizer).input_ids
    # cut inside the prompt: nothing trained is left, so every example is dropped (and counted)
    ds, rep = prepare_dataset(path, tiny_tokenizer, max_length=5, use_cache=False, num_proc=1)
    assert len(ds) == 0 and rep.dropped_no_trained == 5
    # cut one token short: the answer survives, the final end-of-turn is cut
    ds, rep = prepare_dataset(path, tiny_tokenizer, max_length=len(ids) - 1, use_cache=False, num_proc=1)
    assert rep.truncated >= 1 and ds[0]["length"] == len(ids) - 1 and ds[0]["truncated"]


def test_cache_hit_does_not_render(tmp_path, tiny_tokenizer, monkeypatch):
    path = pc_file(tmp_path / "d.jsonl", 12)
    cache = tmp_path / "cache"
    ds1, rep1 = prepare_dataset(path, tiny_tokenizer, cache_dir=cache, num_proc=1)
    assert not rep1.cached and Path(rep1.cache_path).parent == cache
    assert [p.name for p in cache.iterdir()] == [rep1.fingerprint]

    calls = []
    monkeypatch.setattr(render_rows, "_render_chunk", lambda convs: calls.append(convs) or pytest.fail("rendered"))
    ds2, rep2 = prepare_dataset(path, tiny_tokenizer, cache_dir=cache, num_proc=1)
    assert rep2.cached and rep2.fingerprint == rep1.fingerprint and calls == []
    assert ds2["input_ids"] == ds1["input_ids"] and rep2.examples == rep1.examples

    # anything in the key changes the fingerprint: max_length, template, the data file
    monkeypatch.undo()
    _, rep3 = prepare_dataset(path, tiny_tokenizer, cache_dir=cache, num_proc=1, max_length=100)
    _, rep4 = prepare_dataset(path, tiny_tokenizer, cache_dir=cache, num_proc=1, template="vicuna")
    pc_file(path, 13)
    _, rep5 = prepare_dataset(path, tiny_tokenizer, cache_dir=cache, num_proc=1)
    assert len({rep1.fingerprint, rep3.fingerprint, rep4.fingerprint, rep5.fingerprint}) == 4
    assert not any((rep3.cached, rep4.cached, rep5.cached)) and rep5.examples == 13


def test_default_cache_location(tmp_path, tiny_tokenizer, monkeypatch):
    monkeypatch.setenv("INSTRUCTKIT_CACHE", str(tmp_path / "ikcache"))
    _, rep = prepare_dataset(pc_file(tmp_path / "d.jsonl", 3), tiny_tokenizer, num_proc=1)
    assert Path(rep.cache_path).parent == tmp_path / "ikcache" / "data"


def test_two_processes_give_the_same_rows(tmp_path, tiny_tokenizer):
    path = pc_file(tmp_path / "d.jsonl", 3 * prep.CHUNK + 7, bad_every=100)
    a, ra = prepare_dataset(path, tiny_tokenizer, use_cache=False, num_proc=1, on_error="skip")
    b, rb = prepare_dataset(path, tiny_tokenizer, use_cache=False, num_proc=2, on_error="skip")
    assert a["input_ids"] == b["input_ids"] and a["labels"] == b["labels"] and a["line"] == b["line"]
    assert ra.skipped.counts == rb.skipped.counts == {"empty_assistant": 7}
    _, rl = prepare_dataset(path, tiny_tokenizer, use_cache=False, num_proc=2, on_error="skip", limit=50)
    assert rl.read + rl.skipped.total == 50


def test_prepare_conversations(tmp_path, tiny_tokenizer):
    convs = [Conversation.from_pairs(f"q{i}", f"a{i}", task="t") for i in range(4)]
    convs.append(Conversation.from_pairs("q", " ", source="mix", line=9))
    ds, rep = prepare_conversations(convs, tiny_tokenizer, on_error="skip")
    assert len(ds) == 4 and rep.skipped.counts == {"empty_assistant": 1}
    assert rep.skipped.examples["empty_assistant"][0].startswith("mix:9: ")
    assert ds[1]["input_ids"] == render(convs[1], tiny_tokenizer).input_ids
    _, r1 = prepare_conversations(convs[:4], tiny_tokenizer, cache_dir=tmp_path)
    _, r2 = prepare_conversations(convs[:4], tiny_tokenizer, cache_dir=tmp_path)
    assert not r1.cached and r2.cached


@pytest.mark.parametrize("template,max_length", [(None, None), ("vicuna", None), ("llama3", 40), (None, 25)])
def test_columnar_chunk_equals_render_batch(tiny_tokenizer, template, max_length):
    from instructkit.chat import Renderer

    convs = [Conversation.from_messages([{"role": "system", "content": "Be  terse.\n"},
                                         {"role": "user", "content": f"Q {i}: what?  "},
                                         {"role": "assistant", "content": f" A{i} é 日本\n"},
                                         {"role": "user", "content": "and then"},
                                         {"role": "assistant", "content": "then " * i}], source="s", line=i)
             for i in range(1, 12)]
    convs.append(Conversation.from_pairs("x " * 60, "late answer", source="s", line=99))  # may be truncated away
    render_rows._init_worker(Renderer(tiny_tokenizer, template, None), False, max_length, "right")
    fast, fast_err = render_rows._render_chunk_columnar(convs, tiny_tokenizer.backend_tokenizer)
    ref, ref_err = render_rows._render_chunk_generic(convs)
    assert fast.to_pylist() == ref.to_pylist()
    assert [str(e) for e in fast_err] == [str(e) for e in ref_err]
