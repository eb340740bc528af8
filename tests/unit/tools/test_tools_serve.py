"""The server returns tool_calls to the openai SDK as the API does (scripted engine, real HTTP server)."""

from __future__ import annotations

import json
import threading
from types import SimpleNamespace

import pytest

from instructkit.lm.engine import Completion, Event
from instructkit.toolset.calculator import CALCULATOR_SCHEMA

openai = pytest.importorskip("openai")


class ScriptedEngine:
    """Engine stand-in: replies with scripted texts; records the prompts (decoded) it was given."""

    max_context = 4096
    _running: list = []
    _waiting: list = []

    def __init__(self, tokenizer, replies):
        self.tok, self.replies, self.prompts = tokenizer, list(replies), []

    def start(self):
        return self

    def stop(self):
        pass

    def submit(self, ids, params, sink=None):
        self.prompts.append(self.tok.decode(ids))
        text = self.replies.pop(0)
        req = SimpleNamespace(outputs=[Completion(text, self.tok.encode(text, add_special_tokens=False), "stop")],
                              done=threading.Event(), cancel=lambda: None)
        req.done.set()
        if sink is not None:
            sink(Event(0, text=text, finish_reason="stop"))
        return req


CALLS = ('Let me compute.\n<tool_call>\n{"name": "calculator", "arguments": {"expression": "48/2"}}\n</tool_call>\n'
         '<tool_call>\n{"name": "calculator", "arguments": {"expression": "3*7"}}\n</tool_call>')


@pytest.fixture()
def serve(tiny_tokenizer):
    from instructkit.serve.adapters import ServedModels
    from instructkit.serve.server import serve_engine

    servers = []

    def start(replies, template="chatml_tools", **kw):
        eng = ScriptedEngine(tiny_tokenizer, replies)
        srv = serve_engine(eng, tiny_tokenizer, ServedModels("tiny", {}), chat_template=template, **kw)
        servers.append(srv)
        return eng, openai.OpenAI(base_url=srv.url, api_key="x", max_retries=0, timeout=60)

    yield start
    for s in servers:
        s.close()


def test_tool_calls_round_trip_through_the_sdk(serve):
    eng, client = serve([CALLS, "48/2 + 3*7 = 45."])
    msgs = [{"role": "user", "content": "What is 48/2 + 3*7?"}]
    r = client.chat.completions.create(model="tiny", messages=msgs, tools=[CALCULATOR_SCHEMA])
    ch = r.choices[0]
    assert ch.finish_reason == "tool_calls" and ch.message.content == "Let me compute."
    calls = ch.message.tool_calls
    assert [c.function.name for c in calls] == ["calculator", "calculator"]
    assert json.loads(calls[1].function.arguments) == {"expression": "3*7"} and calls[0].id.startswith("call_")
    assert '"name": "calculator"' in eng.prompts[0]  # the schema reached the prompt
    # the client runs the tools and sends the results back, as with the OpenAI API
    msgs.append(ch.message.model_dump(exclude_none=True))
    msgs += [{"role": "tool", "tool_call_id": calls[0].id, "content": "24"},
             {"role": "tool", "tool_call_id": calls[1].id, "content": "21"}]
    r2 = client.chat.completions.create(model="tiny", messages=msgs, tools=[CALCULATOR_SCHEMA])
    assert r2.choices[0].finish_reason == "stop" and r2.choices[0].message.content == "48/2 + 3*7 = 45."
    assert r2.choices[0].message.tool_calls is None
    p = eng.prompts[1]
    assert '{"name": "calculator", "arguments": {"expression": "3*7"}}' in p and "<tool_response>\n21\n" in p


def test_tool_choice_none_and_unsupported(serve):
    eng, client = serve([CALLS])
    r = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "x"}],
                                       tools=[CALCULATOR_SCHEMA], tool_choice="none")
    assert r.choices[0].message.tool_calls is None and "<tool_call>" in r.choices[0].message.content
    with pytest.raises(openai.BadRequestError, match="tool_choice"):
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "x"}],
                                       tools=[CALCULATOR_SCHEMA], tool_choice="required")


def test_template_without_tools_is_a_clear_400(serve):
    _, client = serve(["hi"], template=None)  # the tiny tokenizer's own (SmolLM2-like) template
    with pytest.raises(openai.BadRequestError, match="chatml_tools"):
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "x"}],
                                       tools=[CALCULATOR_SCHEMA])


def test_chat_client_runs_the_tools(serve):
    from instructkit.toolset.chat import tool_sender
    from instructkit.toolset.registry import load_toolset

    eng, client = serve([CALLS, "It is 45."])
    notes = []
    send = tool_sender(str(client.base_url).rstrip("/"), "x", "tiny", load_toolset("calculator"), note=notes.append)
    assert "".join(send([{"role": "user", "content": "48/2 + 3*7?"}])) == "It is 45."
    assert notes == ['[calculator {"expression": "48/2"} -> 24]', '[calculator {"expression": "3*7"} -> 21]']
    assert "<tool_response>\n24\n</tool_response>" in eng.prompts[1]


def test_server_side_tools_run_the_loop_and_return_the_answer(serve):
    from instructkit.serve.tools import ServerTools

    eng, client = serve([CALLS, "48/2 + 3*7 = 45."], server_tools=ServerTools.load("calculator", max_calls=4))
    r = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "What is 48/2 + 3*7?"}])
    ch = r.choices[0]
    assert ch.finish_reason == "stop" and ch.message.content == "48/2 + 3*7 = 45." and ch.message.tool_calls is None
    assert ch.message.model_extra["tool_trace"] == [
        {"name": "calculator", "arguments": {"expression": "48/2"}, "result": "24"},
        {"name": "calculator", "arguments": {"expression": "3*7"}, "result": "21"}]
    assert len(eng.prompts) == 2 and '"name": "calculator"' in eng.prompts[0]  # offered without client tools
    assert "<tool_response>\n24\n</tool_response>" in eng.prompts[1] and "<tool_response>\n21\n" in eng.prompts[1]
    assert r.usage.completion_tokens > 0 and r.usage.prompt_tokens > len(eng.prompts[0].split()) // 2


def test_server_side_tools_stop_at_the_call_limit_and_refuse_client_tools(serve):
    from instructkit.serve.tools import ServerTools

    eng, client = serve([CALLS, "x"], server_tools=ServerTools.load("calculator", max_calls=1))
    r = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "q"}])
    # two calls in one turn exceed K=1: nothing is run, the turn's text is the answer
    assert r.choices[0].message.content == "Let me compute." and r.choices[0].message.model_extra["tool_trace"] == []
    assert len(eng.prompts) == 1
    with pytest.raises(openai.BadRequestError, match="runs its own tools"):
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "q"}],
                                       tools=[CALCULATOR_SCHEMA])
