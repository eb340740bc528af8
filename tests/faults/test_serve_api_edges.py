"""Issue #24 item 5: --run-tools finish reasons, tool schemas, error types, /health and /v1/models."""

from __future__ import annotations

import json
import threading

import httpx
import pytest

from instructkit.lm.engine import Engine
from serve_fault_helpers import ScriptedEngine, headers, root, start_server, wait_idle

CALL = '<tool_call>\n{"name": "calculator", "arguments": {"expression": "2+2"}}\n</tool_call>'
MSGS = [{"role": "user", "content": "q"}]


def _tools_server(tok, replies, max_calls=4):
    from instructkit.serve.tools import ServerTools
    eng = ScriptedEngine(tok, replies)
    return start_server(eng, tok, chat_template="chatml_tools",
                        server_tools=ServerTools.load("calculator", max_calls=max_calls))


def test_run_tools_answer_cut_at_max_tokens_says_length(tiny_tokenizer):
    srv = _tools_server(tiny_tokenizer, [(CALL, "stop"), ("it is fo", "length")])
    try:
        r = httpx.post(f"{srv.url}/chat/completions", headers=headers(), timeout=60,
                       json={"model": "tiny", "messages": MSGS, "max_tokens": 3})
        ch = r.json()["choices"][0]
        assert ch["finish_reason"] == "length" and ch["message"]["content"] == "it is fo"
        assert ch["message"]["tool_trace"][0]["result"] == "4"
    finally:
        srv.close()


def test_run_tools_call_limit_is_visible(tiny_tokenizer):
    srv = _tools_server(tiny_tokenizer, [(CALL, "stop"), (CALL, "stop")], max_calls=1)
    try:
        r = httpx.post(f"{srv.url}/chat/completions", headers=headers(), timeout=60,
                       json={"model": "tiny", "messages": MSGS})
        ch = r.json()["choices"][0]
        assert ch["finish_reason"] == "length"
        assert ch["message"]["tool_limit"] == {"max_calls": 1, "reached": True}
    finally:
        srv.close()


@pytest.fixture(scope="module")
def srv(tiny_tokenizer, tmp_path_factory):
    from instructkit.models import make_tiny_model
    from peft import LoraConfig, get_peft_model

    from instructkit.serve.adapters import attach_adapters
    # an adapter served from a server path that must not leak through /v1/models
    path = str(tmp_path_factory.mktemp("secret-server-dir") / "ada")
    get_peft_model(make_tiny_model(tiny_tokenizer), LoraConfig(r=2, target_modules=["q_proj"])).save_pretrained(path)
    model = attach_adapters(make_tiny_model(tiny_tokenizer), {"ada": path})
    s = start_server(Engine(model, tiny_tokenizer), tiny_tokenizer, adapters={"ada": path})
    yield s
    s.close()


@pytest.mark.parametrize("tools", [[{"type": "function"}], [{"type": "function", "function": {}}],
                                   [{"type": "retrieval", "function": {"name": "f"}}],
                                   [{"type": "function", "function": {"name": "bad name!"}}],
                                   [{"type": "function", "function": {"name": "f", "parameters": "x"}}]])
def test_malformed_tools_are_400(tiny_tokenizer, tools):
    # a tools-aware template (a plain one refuses every tools request for another reason)
    s = start_server(ScriptedEngine(tiny_tokenizer, [("ok", "stop")]), tiny_tokenizer, chat_template="chatml_tools")
    try:
        r = httpx.post(f"{s.url}/chat/completions", headers=headers(), timeout=30,
                       json={"model": "tiny", "messages": MSGS, "tools": tools})
    finally:
        s.close()
    assert r.status_code == 400, r.text
    assert r.json()["error"]["param"] == "tools" and "tools[0]" in r.json()["error"]["message"]


def test_405_and_404_are_invalid_request_errors(srv):
    r = httpx.get(f"{srv.url}/chat/completions", headers=headers())
    assert r.status_code == 405 and r.json()["error"]["type"] == "invalid_request_error"
    r = httpx.get(f"{srv.url}/nowhere", headers=headers())
    assert r.status_code == 404 and r.json()["error"]["type"] == "invalid_request_error"


def test_models_list_shows_no_server_paths(srv):
    cards = httpx.get(f"{srv.url}/models", headers=headers()).json()["data"]
    assert [c["id"] for c in cards] == ["tiny", "ada"]
    assert "secret-server-dir" not in json.dumps(cards)
    assert cards[1]["root"] == "ada" and cards[1]["parent"] == "tiny"


def test_health_counts_sequences_being_admitted(srv, monkeypatch):
    batch = srv.state.engine._batch
    gate, entered = threading.Event(), threading.Event()
    real = batch.prefill

    def slow_prefill(new):  # a long prefill
        entered.set()
        gate.wait(30)
        return real(new)
    monkeypatch.setattr(batch, "prefill", slow_prefill)
    t = threading.Thread(target=lambda: httpx.post(f"{srv.url}/completions", headers=headers(), timeout=60,
                                                   json={"model": "tiny", "prompt": "the a", "max_tokens": 2, "n": 2}))
    t.start()
    try:
        assert entered.wait(30)
        st = httpx.get(f"{root(srv)}/health").json()
        assert st["admitting"] == 2 and st["running"] == 0 and st["waiting"] == 0, st
    finally:
        gate.set()
        t.join()
    assert wait_idle(srv)["admitting"] == 0
