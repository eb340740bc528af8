"""parse(format(x)) == x per family over generated calls; parse(render(x)) == x through chatml_tools."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from instructkit.chat import Conversation, Renderer
from instructkit.chat.conversation import ToolCall
from instructkit.chat.tool_parsers import PARSERS, get_parser

# JSON values: unicode strings (including braces, quotes, closing tags), numbers, nesting
_scalar = st.none() | st.booleans() | st.integers(-10**12, 10**12) | \
    st.floats(allow_nan=False, allow_infinity=False, width=64) | st.text(max_size=20) | \
    st.sampled_from(["</tool_call>", "[TOOL_CALLS]", "{\"name\": \"x\"}", "; {", "Action: y", "ü€😀\n\t\\"])
_json = st.recursive(_scalar, lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=8), c, max_size=3),
                     max_leaves=10)
_args = st.dictionaries(st.text(max_size=10), _json, max_size=4)
_name = st.from_regex(r"[A-Za-z_][A-Za-z0-9_.-]{0,20}", fullmatch=True)
# content without any family's markers, already stripped (what a parser gives back)
_content = st.text(st.characters(blacklist_characters="<[{}]>", blacklist_categories=("Cs",)), max_size=40) \
    .map(str.strip).filter(lambda s: "Action:" not in s and "Final Answer:" not in s and "Thought:" not in s
                           and "\nAction" not in s)
_ids = st.none() | st.from_regex(r"[A-Za-z0-9]{9}", fullmatch=True)


def _calls(with_ids: bool):
    one = st.builds(ToolCall, _name, _args, _ids if with_ids else st.none())
    return st.lists(one, min_size=1, max_size=4)


@pytest.mark.parametrize("family", sorted(PARSERS))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_roundtrip_per_family(family, data):
    p = get_parser(family)
    calls = data.draw(_calls(with_ids=family == "mistral"))
    content = data.draw(_content)
    got = p.parse(p.format(content, calls))
    assert got.errors == [] and got.calls == calls and got.content == content
    # a turn without calls is the answer itself
    final = p.parse(p.format(content, []))
    assert final.calls == [] and final.content == content


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(calls=_calls(with_ids=False), content=_content)
def test_parse_of_rendered_chatml_tools(tiny_tokenizer, calls, content):
    """The text the shipped template renders for an assistant turn is what the hermes parser reads."""
    rd = Renderer(tiny_tokenizer, "chatml_tools")
    head = [{"role": "user", "content": "q"}]
    turn = Conversation.from_messages(head + [{"role": "assistant", "content": content,
                                               "tool_calls": [c.to_dict() for c in calls]}])
    text = rd.apply(turn.to_messages())
    body = text[len(rd.apply(head, add_generation_prompt=True)):]
    assert body.endswith("<|im_end|>\n")
    got = get_parser("hermes").parse(body[: -len("<|im_end|>\n")])
    assert got.calls == calls and got.content == content and not got.errors
    assert body[: -len("<|im_end|>\n")] == get_parser("hermes").format(content, calls)


@pytest.mark.parametrize("family,text,n_calls,n_errors", [
    ("hermes", 'ok <tool_call>\n{"name": "calc", "arguments": {"expression": "1+"}\n</tool_call>', 0, 1),
    ("hermes", '<tool_call>{"name": "calc", "arguments": {"expression": "2"}}', 1, 0),   # no closing tag
    ("hermes", '<tool_call>\n{"name": calc}\n</tool_call> then text', 0, 1),
    ("hermes", '<tool_call>{"arguments": {}}</tool_call>', 0, 1),
    ("mistral", '[TOOL_CALLS][{"name": "a", "arguments": {}', 0, 1),
    ("llama3_json", '<|python_tag|>{"name": "a", "parameters": {"x": 1}}', 1, 0),
    ("llama3_json", 'Use {"name": "a", "parameters": {', 0, 1),
    ("react", 'Thought: go\nAction: calc\nAction Input: {"expression": "2*3"}\nObservation: 6', 1, 0),
    ("react", 'Action: calc\nAction Input: 2*3', 1, 0),     # free-text input (original ReAct)
    ("react", 'Action: calc\nAction Input: \nObservation:', 0, 1),
])
def test_malformed_and_partial_calls(family, text, n_calls, n_errors):
    got = get_parser(family).parse(text)
    assert (len(got.calls), len(got.errors)) == (n_calls, n_errors)
