"""Readers and prepare on the real T0 mixture files with SmolLM2's tokenizer."""

from __future__ import annotations

import json

import pytest

from instructkit.data import SkipReport, read_conversations
from instructkit.data.prepare import prepare_dataset

pytestmark = [pytest.mark.integration, pytest.mark.shared]


def test_read_all_t0_files(shared_data):
    files = sorted((shared_data / "t0_train").glob("*.jsonl"))
    raw = [json.loads(ln) for f in files for ln in f.open() if ln.strip()]
    lines = len(raw)
    # upstream defect: the 7 TREC templates carry no label (completion is just the marker)
    empty = sum(not r["completion"].replace("<|endoftext|>", "").strip() for r in raw)
    report = SkipReport()
    n, marker = 0, 0
    for c in read_conversations(shared_data / "t0_train", on_error="skip", report=report):
        n += 1
        marker += "<|endoftext|>" in c.messages[-1].content
        assert c.meta["format"] == "prompt_completion"
    # nothing vanishes: every line is either a conversation or a counted skip
    assert n + report.total == lines
    assert marker == 0
    assert report.counts == {"empty_assistant": empty} and empty > 0
    assert all("/trec_" in e for e in report.examples["empty_assistant"])


def test_prepare_t0_with_smollm2(shared_data, smollm2_tokenizer, tmp_path):
    files = sorted((shared_data / "t0_train").glob("*.jsonl"))[:3]
    ds, rep = prepare_dataset(files, smollm2_tokenizer, cache_dir=tmp_path, on_error="skip", limit=300)
    assert len(ds) == rep.examples == 300 - rep.dropped_no_trained
    convs = [c for c, _ in zip(read_conversations(files, on_error="skip"), range(5))]
    for row, conv in zip(ds, convs):
        ref = smollm2_tokenizer.apply_chat_template(conv.to_messages(), tokenize=True, return_dict=False)
        assert row["input_ids"] == list(ref)
        trained = [t for t, lab in zip(row["input_ids"], row["labels"]) if lab != -100]
        assert trained[-1] == smollm2_tokenizer.convert_tokens_to_ids("<|im_end|>")
        assert smollm2_tokenizer.decode(trained[:-1]).strip() == conv.messages[-1].content.strip()
    ds2, rep2 = prepare_dataset(files, smollm2_tokenizer, cache_dir=tmp_path, on_error="skip", limit=300)
    assert rep2.cached and ds2["input_ids"] == ds["input_ids"]
