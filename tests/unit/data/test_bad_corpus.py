"""Every crafted defective file (tests/data/bad) through `instructkit data prepare`, in both modes: the exit
code, a file:line / file:record N location, and read == kept + skipped + dropped - never a traceback."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

BAD = Path(__file__).resolve().parents[2] / "data" / "bad"

# file: (read, kept, skipped, dropped, location of the first error in raise mode or None = no error)
EXPECTED = {
    "alpaca.csv": (3, 2, 1, 0, "alpaca.csv:3"),
    "alpaca.jsonl.gz": (3, 2, 1, 0, "alpaca.jsonl.gz:2"),
    "alpaca.parquet": (3, 2, 1, 0, "alpaca.parquet:record 1"),
    "alpaca_history.json": (3, 2, 1, 0, "alpaca_history.json:record 1"),
    "array_in_jsonl.jsonl": (5, 5, 0, 0, None),
    "bom.jsonl": (2, 2, 0, 0, None),
    "bom_array.json": (3, 3, 0, 0, None),
    "crlf_blank_lines.jsonl": (2, 2, 0, 0, None),
    "deep_nesting.jsonl": (3, 2, 1, 0, "deep_nesting.jsonl:2"),
    "empty.jsonl": (0, 0, 0, 0, "no records to read in"),  # an error in both modes (issue 24 item 17)
    "empty_conversation.jsonl": (2, 1, 1, 0, "empty_conversation.jsonl:1"),
    "empty_output.json": (3, 2, 1, 0, "empty_output.json:record 1"),
    "invalid_json.jsonl": (3, 2, 1, 0, "invalid_json.jsonl:2"),
    "invalid_utf8.jsonl": (3, 2, 1, 0, "invalid_utf8.jsonl:2"),
    "lone_surrogate.jsonl": (3, 2, 1, 0, "lone_surrogate.jsonl:2"),
    "mixed_formats.jsonl": (2, 1, 1, 0, "mixed_formats.jsonl:2"),
    "no_assistant.jsonl": (2, 1, 1, 0, "no_assistant.jsonl:1"),
    "non_alternating.jsonl": (2, 1, 1, 0, "non_alternating.jsonl:2"),
    "not_an_object.jsonl": (3, 1, 2, 0, "not_an_object.jsonl:2"),
    "sharegpt_repairs.jsonl": (4, 3, 1, 0, "sharegpt_repairs.jsonl:4"),
    "sharegpt_unknown_role.jsonl": (2, 1, 1, 0, "sharegpt_unknown_role.jsonl:2"),
    "too_long.jsonl": (2, 1, 0, 1, None),
    "truncated_array.json": (4, 3, 1, 0, "truncated_array.json:record 3"),
    "unknown_fields.jsonl": (2, 2, 0, 0, None),
    "unknown_format.jsonl": (2, 1, 1, 0, "unknown_format.jsonl:1"),
    "wrong_type.jsonl": (2, 1, 1, 0, "wrong_type.jsonl:2"),
}


def test_every_corpus_file_is_listed():
    files = {p.name for p in BAD.iterdir() if p.name != "README.md"}
    assert files == set(EXPECTED)


def _prepare(monkeypatch, capsys, args):
    """Run the real entry point (instructkit.cli.main); return (exit code, stdout + stderr)."""
    from instructkit.cli import main

    monkeypatch.setattr(sys, "argv", ["instructkit", "data", "prepare", *args])
    with pytest.raises(SystemExit) as e:
        main()  # anything but SystemExit here is a traceback a user would see
    out = capsys.readouterr()
    return e.value.code or 0, out.out + out.err


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_bad_file_through_data_prepare_both_modes(name, tmp_path, tiny_model_dir, monkeypatch, capsys):
    read, kept, skipped, dropped, where = EXPECTED[name]
    monkeypatch.setenv("COLUMNS", "400")  # no line wrapping inside the messages checked below
    base = [str(BAD / name), "--model", tiny_model_dir, "--max-length", "64", "--num-proc", "1"]
    if name == "empty.jsonl":  # nothing to prepare: named, exit 2, whatever --on-error says
        for mode in ("skip", "raise"):
            rc, out = _prepare(monkeypatch, capsys, [*base, "--on-error", mode, "--cache-dir", str(tmp_path / mode)])
            assert rc == 2 and f"no records to read in {BAD / name}" in out and "Traceback" not in out, out
        return
    rc, out = _prepare(monkeypatch, capsys, [*base, "--on-error", "skip", "--cache-dir", str(tmp_path / "s")])
    assert rc == 0, out
    (folder,) = [p for p in (tmp_path / "s").iterdir() if p.is_dir()]
    rep = json.loads((folder / "report.json").read_text())
    got = (rep["read"], rep["examples"], sum(rep["skipped"]["counts"].values()),
           rep["dropped_no_trained"] + rep["dropped_too_long"])
    assert got == (read, kept, skipped, dropped), out
    assert read == kept + skipped + dropped
    for examples in rep["skipped"]["examples"].values():  # every skip is located
        assert all(re.search(rf"{re.escape(name)}:(\d+|record \d+)(: |$)", e) for e in examples), examples
    rc, out = _prepare(monkeypatch, capsys, [*base, "--on-error", "raise", "--cache-dir", str(tmp_path / "r")])
    if where is None:
        assert rc == 0, out
    else:
        assert rc == 2 and "Traceback" not in out, out
        assert re.search(rf"error: \S*{re.escape(where)}: ", out), out


def test_corpus_reports_repairs_unknown_fields_and_array_note(tmp_path, tiny_tokenizer):
    from instructkit.data.prepare import prepare_dataset

    _, rep = prepare_dataset([BAD / "sharegpt_repairs.jsonl", BAD / "unknown_fields.jsonl",
                              BAD / "array_in_jsonl.jsonl", BAD / "alpaca_history.json"], tiny_tokenizer,
                             on_error="skip", use_cache=False, num_proc=1)
    assert rep.skipped.repaired == {"repaired_leading_assistant": 1, "dropped_share_banner": 1}
    assert rep.skipped.unknown_fields == {"alpaca: category": 2, "alpaca: source": 1}
    assert any("this file is a JSON array" in n for n in rep.skipped.notes)
    text = str(rep.skipped)
    assert "repaired: " in text and "fields not read (ignored): alpaca: category (2 records)" in text


def test_repair_off_rejects_leading_assistant(tiny_tokenizer):
    from instructkit.data import SkipReport, read_conversations

    rep = SkipReport()
    convs = list(read_conversations(BAD / "sharegpt_repairs.jsonl", on_error="skip", report=rep,
                                    repair_leading_assistant=False))
    assert len(convs) == 2 and rep.counts["non_alternating"] == 2 and rep.repaired == {"dropped_share_banner": 1}


def test_history_is_read_as_turns():
    from instructkit.data import read_conversations

    c = next(iter(read_conversations(BAD / "alpaca_history.json", on_error="skip")))
    assert [(m.role, m.content) for m in c.messages] == [
        ("user", "What is 1+1?"), ("assistant", "2"), ("user", "And 2+2?"), ("assistant", "4"),
        ("user", "Say 1"), ("assistant", "ok")]


def test_in_memory_lone_surrogate_is_a_located_skip(tiny_tokenizer):
    from instructkit.chat import Conversation
    from instructkit.data.prepare import prepare_conversations

    convs = [Conversation.from_pairs("a \ud800 b", "x", source="m", line=1),
             Conversation.from_pairs("ok", "fine", source="m", line=2)]
    ds, rep = prepare_conversations(convs, tiny_tokenizer, on_error="skip")
    assert len(ds) == 1 and rep.skipped.counts == {"invalid_unicode": 1}
    assert rep.skipped.examples["invalid_unicode"][0].startswith("m:1: ")
