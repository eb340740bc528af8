"""Reading tool use from OpenAI, ShareGPT (LLaMA-Factory/Glaive) and Hermes-text records."""

from __future__ import annotations

import json

import pytest

from instructkit.chat import IGNORE_INDEX, render
from instructkit.chat.conversation import ToolCall
from instructkit.data.readers import read_conversations
from instructkit.errors import DataError

WEATHER = {"name": "weather", "description": "Weather in a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}
OPENAI = {"tools": [{"type": "function", "function": WEATHER}], "messages": [
    {"role": "user", "content": "Weather in Paris and Köln?"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "a", "type": "function", "function": {"name": "weather", "arguments": "{\"city\": \"Paris\"}"}},
        {"id": "b", "type": "function", "function": {"name": "weather", "arguments": "{\"city\": \"Köln\"}"}}]},
    {"role": "tool", "tool_call_id": "a", "content": "18C"},
    {"role": "tool", "tool_call_id": "b", "content": "12C"},
    {"role": "assistant", "content": "Paris 18C, Köln 12C."}]}
SHAREGPT = {"tools": json.dumps([WEATHER]), "conversations": [
    {"from": "human", "value": "Weather in Paris?"},
    {"from": "function_call", "value": "{\"name\": \"weather\", \"arguments\": {\"city\": \"Paris\"}}"},
    {"from": "observation", "value": "18C"},
    {"from": "gpt", "value": "It is 18C."}]}
HERMES = {"conversations": [
    {"from": "system", "value": "You are a function calling AI model. <tools>...</tools>"},
    {"from": "human", "value": "Weather in Paris?"},
    {"from": "gpt", "value": "Checking.\n<tool_call>\n{\"name\": \"weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>"},
    {"from": "tool", "value": "<tool_response>\n{\"temp\": 18}\n</tool_response>"},
    {"from": "gpt", "value": "It is 18C."}]}


def _read(tmp_path, rec, name="d.jsonl"):
    p = tmp_path / name
    p.write_text(json.dumps(rec) + "\n")
    return list(read_conversations(p))


def test_openai_tool_calls(tmp_path, tiny_tokenizer):
    [c] = _read(tmp_path, OPENAI)
    assert c.tools == OPENAI["tools"] and "unknown_fields" not in c.meta
    assert c.messages[1].tool_calls == [ToolCall("weather", {"city": "Paris"}, "a"),
                                        ToolCall("weather", {"city": "Köln"}, "b")]
    assert c.messages[2].tool_call_id == "a"
    r = render(c, tiny_tokenizer, "chatml_tools")
    trained = tiny_tokenizer.decode([i for i, l in zip(r.input_ids, r.labels) if l != IGNORE_INDEX])
    assert '"city": "Köln"' in trained and "18C<" not in trained


def test_sharegpt_function_call_observation(tmp_path):
    [c] = _read(tmp_path, SHAREGPT)
    assert [m.role for m in c.messages] == ["user", "assistant", "tool", "assistant"]
    assert c.messages[1].content == "" and c.messages[1].tool_calls == [ToolCall("weather", {"city": "Paris"})]
    assert c.tools == [{"type": "function", "function": WEATHER}]


def test_hermes_text(tmp_path):
    [c] = _read(tmp_path, HERMES)
    assert c.messages[2].content == "Checking." and c.messages[2].tool_calls[0].arguments == {"city": "Paris"}
    assert c.messages[3].content == '{"temp": 18}'


@pytest.mark.parametrize("rec,field", [
    ({"conversations": [{"from": "human", "value": "q"}, {"from": "function_call", "value": "{not json"},
                        {"from": "observation", "value": "r"}, {"from": "gpt", "value": "a"}]}, "conversations[1].value"),
    ({"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": None,
                    "tool_calls": [{"function": {"arguments": "{}"}}]}]}, "messages[1].tool_calls[0].function.name"),
    ({"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "<tool_call>{bad</tool_call>"}]},
     "conversations[1].value"),
    ({"tools": "{oops", "messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}, "tools"),
])
def test_bad_tool_records_name_the_field(tmp_path, rec, field):
    with pytest.raises(DataError) as e:
        _read(tmp_path, rec)
    assert e.value.field == field and e.value.line == 1
