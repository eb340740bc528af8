"""``instructkit data inspect`` / ``prepare`` through typer's CliRunner with the tiny model folder."""

from __future__ import annotations

import json
import re

from typer.testing import CliRunner

from instructkit.data.cli import app

runner = CliRunner()


def test_inspect_writes_html_and_png(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("INSTRUCTKIT_CACHE", str(tmp_path / "cache"))
    data = tmp_path / "d.jsonl"
    recs = [{"instruction": "Use <b>bold</b> & friends", "input": "", "output": "Sure: <i>ok</i>"},
            {"instruction": "x", "output": ""},  # skipped: empty assistant turn
            {"instruction": "Add 2 and 2", "input": "", "output": "4"}]
    data.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    html, png = tmp_path / "out" / "view.html", tmp_path / "out" / "len.png"
    res = runner.invoke(app, ["inspect", str(data), "--model", tiny_model_dir, "--n", "2",
                              "--html", str(html), "--plot", str(png)])
    assert res.exit_code == 0, res.output
    assert "examples: 2 kept of 3 read; skipped 1" in res.output
    assert "empty_assistant" in res.output and "d.jsonl:2" in res.output
    page = html.read_text()
    text = re.sub(r"</?span[^>]*>", "", page)  # one span per token: join the tokens back
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; friends" in text and "<b>" not in page  # user text is escaped
    assert page.count("<h2>") == 2 and "class='t y" in page and "class='t p" in page
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_inspect_raise_mode_reports_location(tmp_path, tiny_model_dir, monkeypatch):
    monkeypatch.setenv("INSTRUCTKIT_CACHE", str(tmp_path / "cache"))
    data = tmp_path / "d.jsonl"
    data.write_text('{"prompt": "p", "completion": "c"}\n{"prompt": 1, "completion": "c"}\n')
    res = runner.invoke(app, ["inspect", str(data), "--model", tiny_model_dir, "--on-error", "raise"])
    assert res.exit_code != 0
    assert "d.jsonl:2: field 'prompt': expected str, got int" in str(res.exception)


def test_prepare_cli_config_and_cache(tmp_path, tiny_model_dir):
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps({"prompt": f"q{i}", "completion": f"a{i}"}) + "\n" for i in range(5)))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"model:\n  name_or_path: {tiny_model_dir}\ndata:\n  paths: [{data}]\n  max_length: 512\n")
    cache = tmp_path / "cache"
    args = ["prepare", "--config", str(recipe), "--cache-dir", str(cache), "data.num_proc=1"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "5 read: 5 kept, 0 skipped" in first.output and "cache hit" not in first.output
    second = runner.invoke(app, args)
    assert second.exit_code == 0 and "cache hit" in second.output
    # plain options instead of a recipe, and an override the recipe schema rejects
    plain = runner.invoke(app, ["prepare", str(data), "--model", tiny_model_dir, "--cache-dir", str(cache),
                                "--max-length", "8"])
    assert plain.exit_code == 0 and "dropped with no trained token" in plain.output
    bad = runner.invoke(app, ["prepare", "--config", str(recipe), "data.bogus=1"])
    assert bad.exit_code != 0 and "unknown key 'data.bogus'" in str(bad.exception)
    bad = runner.invoke(app, ["prepare", "--config", str(recipe), "--format", "csv"])
    assert bad.exit_code != 0 and "key 'format'" in str(bad.exception)
