"""The tools and template-check commands: index, a call by hand, the template probe (exit codes)."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from instructkit.cli import app


def test_index_and_call(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.md").write_text("The zebu is a humped ox.\n\nThe okapi lives in Congo.\n")
    (tmp_path / "docs" / "b.jsonl").write_text(json.dumps({"title": "Nile", "text": "The Nile is a long river."}) + "\n")
    r = CliRunner().invoke(app, ["tools", "index", str(tmp_path / "docs"), "--out", str(tmp_path / "ix")])
    assert r.exit_code == 0 and "indexed 3 passages" in r.output
    r = CliRunner().invoke(app, ["tools", "call", "search", '{"query": "humped ox"}', "--index", str(tmp_path / "ix")])
    assert r.exit_code == 0 and r.output.startswith("[1] a: The zebu is a humped ox.")
    r = CliRunner().invoke(app, ["tools", "call", "calculator", '{"expression": "2**100000"}'])
    assert r.exit_code == 2 and r.output.startswith("error: exponent too large")  # like every CLI error


def test_template_check_exit_codes(tiny_model_dir):
    r = CliRunner().invoke(app, ["data", "template-check", tiny_model_dir])  # fine for plain chat: exit 0
    assert r.exit_code == 0 and "tools_rendered" in r.output and "chatml_tools" in r.output
    assert "fine for plain chat" in r.output
    r = CliRunner().invoke(app, ["data", "template-check", tiny_model_dir, "--template", "chatml_tools"])
    assert r.exit_code == 0 and "fit for training, tool calls included" in r.output
