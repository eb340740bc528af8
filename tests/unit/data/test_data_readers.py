"""Readers: every format, auto-detection, located errors, skip counting, streaming, folders and globs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from instructkit.data import SkipReport, detect_format, read_conversations
from instructkit.errors import DataError, InstructkitError


def write_jsonl(path: Path, records: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    return path


def roles(conv) -> list[str]:
    return [m.role for m in conv.messages]


def test_alpaca_jsonl_and_json_array(tmp_path):
    recs = [{"instruction": "Add", "input": "1+1", "output": "2"},
            {"instruction": "Say hi", "input": "", "output": "hi", "system": "Be brief."}]
    jl = write_jsonl(tmp_path / "a.jsonl", recs)
    arr = tmp_path / "a.json"
    arr.write_text(json.dumps(recs, indent=2))
    for path, lines in ((jl, [1, 2]), (arr, [0, 1])):  # JSON arrays are located by record index
        convs = list(read_conversations(path))
        assert [c.meta["line"] for c in convs] == lines
        assert all(c.meta["source"] == str(path) and c.meta["format"] == "alpaca" for c in convs)
        assert convs[0].messages[0].content == "Add\n\n1+1"
        assert convs[1].messages[1].content == "Say hi"  # empty input: no "\n\n"
        assert roles(convs[1]) == ["system", "user", "assistant"] and convs[1].system == "Be brief."


def test_sharegpt_role_mapping(tmp_path):
    rec = {"id": "x1", "conversations": [
        {"from": "system", "value": "sys"}, {"from": "human", "value": "q"}, {"from": "function_call", "value": "call"},
        {"from": "observation", "value": "42"}, {"from": "gpt", "value": "a"}, {"from": "user", "value": "q2"},
        {"from": "chatgpt", "value": "a2"}, {"from": "human", "value": "q3"}, {"from": "bard", "value": "a3"}]}
    (conv,) = read_conversations(write_jsonl(tmp_path / "s.jsonl", [rec]))
    assert roles(conv) == ["system", "user", "assistant", "tool", "assistant", "user", "assistant", "user", "assistant"]
    assert conv.id == "x1" and conv.meta["format"] == "sharegpt"


def test_openai_messages_and_content_parts(tmp_path):
    rec = {"messages": [{"role": "developer", "content": "sys"},
                        {"role": "user", "content": [{"type": "text", "text": "he"}, {"type": "text", "text": "llo"}]},
                        {"role": "assistant", "content": "hi"}]}
    (conv,) = read_conversations(write_jsonl(tmp_path / "o.jsonl", [rec]))
    assert roles(conv) == ["system", "user", "assistant"]
    assert conv.messages[1].content == "hello"


def test_prompt_completion_strips_eos_marker(tmp_path):
    path = write_jsonl(tmp_path / "t0.jsonl", [{"prompt": "Q?\n", "completion": "Yes<|endoftext|>"},
                                               {"prompt": "P", "completion": "no marker"}])
    a, b = read_conversations(path)
    assert a.messages[0].content == "Q?\n" and a.messages[1].content == "Yes"
    assert b.messages[1].content == "no marker"


def test_auto_detection_and_explicit_override(tmp_path):
    files = {"alpaca": {"instruction": "i", "output": "o"}, "sharegpt": {"conversations": []},
             "openai": {"messages": []}, "prompt_completion": {"prompt": "p", "completion": "c"}}
    for fmt, rec in files.items():
        assert detect_format(write_jsonl(tmp_path / f"{fmt}.jsonl", [rec])) == fmt
    # explicit format wins over detection: an alpaca record read as openai lacks "messages"
    with pytest.raises(DataError) as e:
        list(read_conversations(tmp_path / "alpaca.jsonl", format="openai"))
    assert e.value.field == "messages" and e.value.reason == "missing_field"
    with pytest.raises(DataError, match="cannot detect the record format"):
        detect_format(write_jsonl(tmp_path / "odd.jsonl", [{"text": "x"}]))
    with pytest.raises(InstructkitError, match="unknown format"):
        read_conversations(tmp_path / "alpaca.jsonl", format="csv")


# One defect of each kind, each on its own line, between good records.
GOOD = {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]}
DEFECTS = {  # reason -> (record line, expected field)
    "invalid_json": ('{"conversations": [', None),
    "missing_field": ({"conversations": [{"from": "human"}, {"from": "gpt", "value": "x"}]}, "conversations[0].value"),
    "wrong_type": ({"conversations": [{"from": "human", "value": 7}, {"from": "gpt", "value": "x"}]},
                   "conversations[0].value"),
    "unknown_role": ({"conversations": [{"from": "narrator", "value": "q"}, {"from": "gpt", "value": "x"}]},
                     "conversations[0].from"),
    "empty_assistant": ({"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "  "}]},
                        "conversations[1].value"),
    "non_alternating": ({"conversations": [{"from": "human", "value": "q"}, {"from": "human", "value": "q"},
                                           {"from": "gpt", "value": "x"}]}, "conversations[1].from"),
}


def defect_file(tmp_path: Path) -> tuple[Path, dict[str, int]]:
    lines, where = [GOOD], {}
    for reason, (rec, _field) in DEFECTS.items():
        lines.append(rec)
        where[reason] = len(lines)
        lines.append(GOOD)
    return write_jsonl(tmp_path / "defects.jsonl", lines), where


@pytest.mark.parametrize("reason", list(DEFECTS))
def test_each_defect_raises_located_error(tmp_path, reason):
    rec, field = DEFECTS[reason]
    path = write_jsonl(tmp_path / f"{reason}.jsonl", [GOOD, rec, GOOD])
    with pytest.raises(DataError) as e:
        list(read_conversations(path))
    err = e.value
    assert (err.path, err.line, err.reason, err.field) == (str(path), 2, reason, field)
    assert str(err).startswith(f"{path}:2: ")
    if field:
        assert f"field '{field}'" in str(err)


def test_defect_file_skip_mode_counts_every_reason(tmp_path):
    path, where = defect_file(tmp_path)
    report = SkipReport()
    convs = list(read_conversations(path, on_error="skip", report=report))
    assert len(convs) == 1 + len(DEFECTS)  # every good record comes through
    assert all(c.messages[1].content == "hello" for c in convs)
    assert dict(report.counts) == {r: 1 for r in DEFECTS}
    assert report.total == len(DEFECTS)
    for reason, line in where.items():
        assert report.examples[reason][0].startswith(f"{path}:{line}: ")
    text = str(report)
    assert all(f"{r}: 1" in text for r in DEFECTS)
    from rich.console import Console
    con = Console(record=True, width=200)
    con.print(report)
    table = con.export_text()
    assert "non_alternating" in table and "skipped records: 6" in table


def test_skip_report_keeps_first_examples_only(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", ["nope"] * 5 + [GOOD])
    report = SkipReport(max_examples=2)
    assert len(list(read_conversations(path, on_error="skip", report=report))) == 1
    assert report.counts["invalid_json"] == 5 and len(report.examples["invalid_json"]) == 2


def test_jsonl_is_streamed(tmp_path):
    # line 2 is broken: if the reader parsed the whole file before yielding, next() would raise
    path = write_jsonl(tmp_path / "big.jsonl", [GOOD, "{broken"] + [GOOD] * 2000)
    it = read_conversations(path)
    first = next(it)
    assert first.meta["line"] == 1
    with pytest.raises(DataError, match=":2: invalid JSON"):
        next(it)


def test_folders_and_globs(tmp_path):
    d = tmp_path / "data"
    d.mkdir()
    write_jsonl(d / "b.jsonl", [GOOD])
    write_jsonl(d / "a.jsonl", [{"prompt": "p", "completion": "c"}])
    (d / "notes.txt").write_text("ignored")
    convs = list(read_conversations(d))
    assert [Path(c.meta["source"]).name for c in convs] == ["a.jsonl", "b.jsonl"]
    assert [c.meta["format"] for c in convs] == ["prompt_completion", "sharegpt"]  # detected per file
    assert len(list(read_conversations(str(d / "*.jsonl")))) == 2
    assert len(list(read_conversations([d / "a.jsonl", d / "b.jsonl"]))) == 2
    with pytest.raises(InstructkitError, match="no such file"):
        read_conversations(tmp_path / "missing.jsonl")
    with pytest.raises(InstructkitError, match="matches no file"):
        read_conversations(str(tmp_path / "*.parquet"))


def test_json_variants(tmp_path):
    # a .json file holding JSON Lines is streamed as such; {"data": [...]} is a JSON array in a wrapper
    jl = write_jsonl(tmp_path / "lines.json", [GOOD, GOOD])
    assert [c.meta["line"] for c in read_conversations(jl)] == [1, 2]
    wrapped = tmp_path / "wrapped.json"
    wrapped.write_text(json.dumps({"data": [GOOD, GOOD, GOOD]}, indent=1))
    assert [c.meta["line"] for c in read_conversations(wrapped)] == [0, 1, 2]
    broken = tmp_path / "broken.json"
    broken.write_text('[\n ' + json.dumps(GOOD) + ',\n {oops}\n]')
    # the array is decoded record by record: what precedes the damage is kept, the rest is one located skip
    rep = SkipReport()
    assert len(list(read_conversations(broken, on_error="skip", report=rep))) == 1
    assert rep.read == 2 and rep.counts == {"invalid_json": 1}
    with pytest.raises(DataError) as e:
        list(read_conversations(broken))
    assert e.value.reason == "invalid_json" and str(e.value).startswith(f"{broken}:record 1: invalid JSON")
    assert "at line 3" in str(e.value)
