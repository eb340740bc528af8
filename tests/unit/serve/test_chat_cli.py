"""`instructkit chat` (REPL commands, streaming against the server) and `instructkit serve` option errors."""

from __future__ import annotations

import pytest

from instructkit.errors import InstructkitError


def test_chat_loop_commands_and_history():
    from instructkit.serve.chat_cli import chat_loop
    lines = iter(["hello", "/system be brief", "again", "/reset", "/bogus", "bye", "/exit"])
    sent, out = [], []

    def send(msgs):
        sent.append([dict(m) for m in msgs])
        yield from ["a", "b"]
    hist = chat_loop(send, read=lambda _p: next(lines), write=out.append)
    assert sent[0] == [{"role": "user", "content": "hello"}]
    assert sent[1] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "again"}]
    assert sent[2] == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "bye"}]
    assert hist == [{"role": "user", "content": "bye"}, {"role": "assistant", "content": "ab"}]
    assert any("unknown command /bogus" in x for x in out)


def test_stream_reply_against_server(server):
    from instructkit.serve.chat_cli import first_model, stream_reply
    assert first_model(server.url, "test-key-123") == "tiny"
    msgs = [{"role": "user", "content": "hi"}]
    text = "".join(stream_reply(server.url, "test-key-123", dict(model="ada", messages=msgs, max_tokens=6,
                                                                   temperature=0)))
    from instructkit.lm.sampling import SamplingParams
    st = server.state
    ids = st.tokenizer(st.renderer.prompt_text(msgs), add_special_tokens=False)["input_ids"]
    assert text == st.engine.generate_many([(ids, SamplingParams(max_tokens=6, adapter="ada"))])[0].outputs[0].text
    with pytest.raises(InstructkitError, match="401"):
        list(stream_reply(server.url, "wrong", dict(model="tiny", messages=msgs)))
    with pytest.raises(InstructkitError, match="404"):
        list(stream_reply(server.url, "test-key-123", dict(model="zzz", messages=msgs)))


def test_serve_option_errors(tmp_path):
    from typer.testing import CliRunner

    from instructkit.cli import app
    from instructkit.serve.adapters import parse_adapter_specs
    with pytest.raises(InstructkitError, match="adapter_config.json"):
        parse_adapter_specs([f"x={tmp_path}"])
    r = CliRunner().invoke(app, ["serve", "tiny", "--engine", "vllm"])
    assert r.exit_code != 0 and "vLLM" in str(r.exception)
    r = CliRunner().invoke(app, ["chat"])
    assert r.exit_code != 0 and "either MODEL" in str(r.exception)
