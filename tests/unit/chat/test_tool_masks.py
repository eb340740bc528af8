"""Tool turns in conversations and their loss masks: calls trained, results never (token by token)."""

from __future__ import annotations

import pytest

from instructkit.chat import IGNORE_INDEX, Conversation, Renderer, render
from instructkit.chat.conversation import ToolCall
from instructkit.errors import DataError, InstructkitError

TOOLS = [{"type": "function", "function": {"name": "calculator", "description": "Arithmetic.",
                                           "parameters": {"type": "object",
                                                          "properties": {"expression": {"type": "string"}}}}}]
MSGS = [
    {"role": "system", "content": "Use tools."},
    {"role": "user", "content": "What is 48/2 plus 3*7?"},
    {"role": "assistant", "content": "Let me compute both.", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "calculator", "arguments": '{"expression": "48/2"}'}},
        {"id": "c2", "type": "function", "function": {"name": "calculator", "arguments": {"expression": "3*7"}}}]},
    {"role": "tool", "tool_call_id": "c1", "name": "calculator", "content": "TOOLRESULT_24"},
    {"role": "tool", "tool_call_id": "c2", "name": "calculator", "content": "TOOLRESULT_21"},
    {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c3", "function": {"name": "calculator", "arguments": {"expression": "24+21", "note": "é ✓"}}}]},
    {"role": "tool", "tool_call_id": "c3", "content": "TOOLRESULT_45"},
    {"role": "assistant", "content": "The answer is 45."},
]


def expected_spans(text: str) -> list[tuple[int, int]]:
    """Assistant bodies found by plain string search: after '<|im_start|>assistant\\n' through '<|im_end|>'."""
    spans, pos = [], 0
    while (i := text.find("<|im_start|>assistant\n", pos)) >= 0:
        s = i + len("<|im_start|>assistant\n")
        e = text.index("<|im_end|>", s) + len("<|im_end|>")
        spans.append((s, e))
        pos = e
    return spans


def check_token_by_token(tok, conv):
    r = render(conv, tok, "chatml_tools")
    text = Renderer(tok, "chatml_tools").apply(conv.to_messages(), tools=conv.tools)
    enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
    assert list(enc["input_ids"]) == r.input_ids
    spans = expected_spans(text)
    assert len(spans) == 3
    for k, ((s, _e), lab) in enumerate(zip(enc["offset_mapping"], r.labels)):
        inside = any(a <= s < b for a, b in spans)
        assert (lab != IGNORE_INDEX) == inside, (k, repr(text[s:s + 20]))
        if lab != IGNORE_INDEX:
            assert lab == r.input_ids[k]
    trained = tok.decode([i for i, l in zip(r.input_ids, r.labels) if l != IGNORE_INDEX])
    assert "TOOLRESULT" not in trained and "Use tools" not in trained
    # both parallel calls, the content-less call and the answer are trained, each with its end of turn
    for piece in ('"expression": "48/2"', '"expression": "3*7"', '"note": "é ✓"', "The answer is 45.",
                  "Let me compute both."):
        assert piece in trained
    assert trained.count("<|im_end|>") == 3 and trained.count("<tool_call>") == 3
    return r


def test_tool_masks_tiny_tokenizer(tiny_tokenizer):
    conv = Conversation.from_messages(MSGS, tools=TOOLS).validate()
    check_token_by_token(tiny_tokenizer, conv)


def test_tool_turns_parity_with_transformers(tiny_tokenizer):
    conv = Conversation.from_messages(MSGS, tools=TOOLS)
    src = Renderer(tiny_tokenizer, "chatml_tools").source
    ref = tiny_tokenizer.apply_chat_template(conv.to_messages(), tools=TOOLS, chat_template=src, tokenize=False)
    assert ref == Renderer(tiny_tokenizer, "chatml_tools").apply(conv.to_messages(), tools=TOOLS)


def test_template_without_tool_support_is_refused(tiny_tokenizer):
    conv = Conversation.from_messages(MSGS, tools=TOOLS)
    with pytest.raises(InstructkitError, match="chatml_tools"):
        render(conv, tiny_tokenizer)  # the tokenizer's own (SmolLM2-like) template ignores tools=
    # a conversation without tools still renders with it
    assert render(Conversation.from_messages([MSGS[1], MSGS[-1]]), tiny_tokenizer).n_trained > 0


def test_tool_call_validation_and_openai_roundtrip():
    conv = Conversation.from_messages(MSGS, tools=TOOLS).validate()
    a = conv.messages[2]
    assert a.tool_calls == [ToolCall("calculator", {"expression": "48/2"}, "c1"),
                            ToolCall("calculator", {"expression": "3*7"}, "c2")]
    assert conv.messages[5].content == "" and conv.messages[3].tool_call_id == "c1"
    oa = [m.to_openai() for m in conv.messages]
    assert oa[5]["content"] is None and oa[2]["tool_calls"][0]["function"]["arguments"] == '{"expression": "48/2"}'
    assert Conversation.from_messages(oa, tools=TOOLS).messages == conv.messages
    bad = [MSGS[1], {"role": "assistant", "content": None,
                     "tool_calls": [{"function": {"name": "calculator", "arguments": "{oops"}}]}]
    with pytest.raises(DataError) as e:
        Conversation.from_messages(bad)
    assert e.value.field == "messages[1].tool_calls[0].function.arguments"
    with pytest.raises(DataError) as e:
        Conversation.from_messages([MSGS[1], {"role": "assistant", "content": None}]).validate()
    assert e.value.field == "messages[1].content"
