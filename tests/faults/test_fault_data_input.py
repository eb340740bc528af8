"""Issue 24 item 17: bad input files give one located line (never a traceback, never the wrong culprit);
UTF-16 is named; CSV lines are right; two system prompts are named as such; empty files and duplicate keys
are reported; the token view shows whole characters and escapes control / bidi characters."""

from __future__ import annotations

import codecs
import json
import os
import sys

import pytest

from instructkit.chat import Conversation
from instructkit.chat.render import Renderer
from instructkit.data.inspect import ExampleView, html_page, token_view
from instructkit.data.readers import SkipReport, read_conversations
from instructkit.errors import DataError, InstructkitError

RECS = [{"instruction": f"q{i}", "output": f"a{i}"} for i in range(3)]


def _main(monkeypatch, capsys, *args):
    from instructkit.cli import main
    monkeypatch.setattr(sys, "argv", ["instructkit", *args])
    monkeypatch.setenv("COLUMNS", "300")
    with pytest.raises(SystemExit) as e:
        main()
    out = capsys.readouterr()
    return e.value.code or 0, out.out + out.err


def _deny(monkeypatch, f):
    """Reading ``f`` fails with EACCES (chmod 000 does not stop root, who runs CI containers)."""
    import errno
    from pathlib import Path

    real = Path.open

    def deny(self, *a, **kw):
        if self == f:
            raise PermissionError(errno.EACCES, "Permission denied", str(f))
        return real(self, *a, **kw)
    monkeypatch.setattr(Path, "open", deny)
    if os.geteuid() != 0:
        f.chmod(0)


@pytest.mark.parametrize("cmd", ["inspect", "prepare"])
def test_unreadable_file_is_one_line_naming_the_file(tmp_path, tiny_model_dir, monkeypatch, capsys, cmd):
    f = tmp_path / "d.jsonl"
    f.write_text("\n".join(json.dumps(r) for r in RECS))
    _deny(monkeypatch, f)
    extra = ["--no-cache"] if cmd == "inspect" else ["--cache-dir", str(tmp_path / "cache")]
    rc, out = _main(monkeypatch, capsys, "data", cmd, str(f), "--model", str(tiny_model_dir), *extra)
    assert rc == 2 and "Traceback" not in out and f"{f}: cannot read: Permission denied" in out, out
    assert "cannot write" not in out


def test_unreadable_file_error_in_the_reader(tmp_path, monkeypatch):
    f = tmp_path / "d.jsonl"
    f.write_text(json.dumps(RECS[0]))
    _deny(monkeypatch, f)
    with pytest.raises(InstructkitError) as ei:
        list(read_conversations(f, on_error="skip"))
    assert str(ei.value) == f"{f}: cannot read: Permission denied"
    assert not isinstance(ei.value, OSError)


@pytest.mark.parametrize("enc, bom", [("utf-16-le", codecs.BOM_UTF16_LE), ("utf-16-be", codecs.BOM_UTF16_BE)])
def test_utf16_file_is_named_not_counted_as_records(tmp_path, enc, bom):
    f = tmp_path / "d.jsonl"
    f.write_bytes(bom + "\n".join(json.dumps(r) for r in RECS).encode(enc))
    report = SkipReport()
    with pytest.raises(DataError, match=r"d.jsonl: the file is UTF-16 text \(byte-order mark") as ei:
        list(read_conversations(f, on_error="skip", report=report))
    assert "UTF-8" in str(ei.value) and report.read == 0


def test_csv_first_record_is_line_2(tmp_path):
    f = tmp_path / "d.csv"
    f.write_text("instruction,output\nq0,\nq1,a1\n")
    report = SkipReport()
    convs = list(read_conversations(f, on_error="skip", report=report))
    assert [c.meta["line"] for c in convs] == [3]
    assert report.examples["empty_assistant"][0].startswith(f"{f}:2:"), report.examples


def test_top_level_system_and_a_system_turn_name_the_clash(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text(json.dumps({"system": "Be brief.", "conversations": [
        {"from": "system", "value": "Be kind."}, {"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]}))
    with pytest.raises(DataError) as ei:
        list(read_conversations(f))
    msg = str(ei.value)
    assert "only allowed first" not in msg and "two system prompts" in msg and "top-level 'system'" in msg, msg
    assert "field 'conversations[0].from'" in msg and ei.value.reason == "two_system_prompts"


@pytest.mark.parametrize("body", ["", "  \n\n \t\n"])
def test_empty_file_is_an_error_not_rc0(tmp_path, tiny_model_dir, monkeypatch, capsys, body):
    f = tmp_path / "d.jsonl"
    f.write_text(body)
    rc, out = _main(monkeypatch, capsys, "data", "prepare", str(f), "--model", str(tiny_model_dir),
                    "--cache-dir", str(tmp_path / "cache"))
    assert rc == 2 and f"no records to read in {f}" in out and "Traceback" not in out, out


def test_empty_file_beside_others_is_warned(tmp_path):
    (tmp_path / "a.jsonl").write_text(json.dumps(RECS[0]) + "\n")
    (tmp_path / "b.jsonl").write_text("\n")
    report = SkipReport()
    assert len(list(read_conversations(tmp_path, report=report))) == 1
    assert f"{tmp_path / 'b.jsonl'}: no records (the file is empty or holds only whitespace)" in report.notes


def test_train_on_empty_file_names_it(tmp_path, tiny_model_dir, monkeypatch, capsys):
    f = tmp_path / "d.jsonl"
    f.write_text("\n")
    (tmp_path / "r.yaml").write_text(f"output_dir: {tmp_path / 'run'}\nmodel:\n  name_or_path: {tiny_model_dir}\n"
                                     f"data:\n  paths: [{f}]\n  cache_dir: {tmp_path / 'c'}\n")
    rc, out = _main(monkeypatch, capsys, "train", "--config", str(tmp_path / "r.yaml"))
    assert rc == 2 and str(f) in out and "{" not in out.split("\n")[-2], out


def test_duplicate_keys_are_warned_with_the_first_location(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text('{"instruction": "q", "output": "a"}\n{"instruction": "q", "output": "first", "output": "last"}\n')
    report = SkipReport()
    convs = list(read_conversations(f, report=report))
    assert convs[1].messages[-1].content == "last"  # JSON's rule, kept; but said
    assert any(n.startswith(f"{f}: 1 record(s) give a key twice") and f"{f}:2, key 'output'" in n
               for n in report.notes), report.notes
    g = tmp_path / "d.json"  # a JSON array too
    g.write_text('[{"instruction": "q", "instruction": "q2", "output": "a"}]')
    report = SkipReport()
    list(read_conversations(g, report=report))
    assert any("key 'instruction'" in n and "record 0" in n for n in report.notes), report.notes


def test_token_view_shows_whole_characters_and_escapes_bidi(tiny_tokenizer):
    conv = Conversation.from_pairs("こんにちは", "abc\u202edef\x1b[31m")
    view, _ = token_view(Renderer(tiny_tokenizer, None, None), conv)
    text = "".join(p for p, _ in view)
    assert "\ufffd" not in text and "こんにちは" in text
    assert "\u202e" not in text and "\\u202e" in text and "\x1b" not in text and "\\x1b[31m" in text
    pieces = [p for p, _ in view]
    assert "こ" in pieces or any("こ" in p and len(p) <= 2 for p in pieces)  # one piece per character run
    page = html_page(type("R", (), {"summary": lambda self: "", "examples": [ExampleView("f", 1, view)]})(), "t")
    assert "\u202e" not in page


def test_token_view_counts_tokens_not_pieces(tiny_tokenizer, tmp_path):
    from instructkit.data.inspect import inspect_conversations
    from instructkit.data.prepare import PrepareReport

    conv = Conversation.from_pairs("こんにちは", "ok")
    ids = Renderer(tiny_tokenizer, None, None)(conv).input_ids
    res = inspect_conversations([conv], tiny_tokenizer, template=None, max_length=None, report=PrepareReport(),
                                lengths=[], n=1)
    v = res.examples[0]
    assert v.n_tokens == len(ids) and len(v.tokens) < len(ids)
