import pytest

from instructkit.chat import Conversation, Message
from instructkit.errors import DataError


@pytest.mark.parametrize("messages,reason,field", [
    ([], "empty_conversation", "messages"),
    ([{"role": "robot", "content": "x"}], "unknown_role", "messages[0].role"),
    ([{"role": "user", "content": "q"}, {"role": "assistant", "content": "  "}], "empty_assistant",
     "messages[1].content"),
    ([{"role": "user", "content": "q"}, {"role": "user", "content": "q2"},
      {"role": "assistant", "content": "a"}], "non_alternating", "messages[1].role"),
    ([{"role": "assistant", "content": "a"}], "non_alternating", "messages[0].role"),
    ([{"role": "user", "content": "q"}, {"role": "system", "content": "s"}], "non_alternating",
     "messages[1].role"),
    ([{"role": "user", "content": "q"}], "no_assistant", "messages"),
])
def test_validation_names_field_and_reason(messages, reason, field):
    with pytest.raises(DataError) as e:
        Conversation.from_messages(messages).validate()
    assert e.value.reason == reason and e.value.field == field
    assert field in str(e.value)


def test_valid_tool_flow_and_roundtrip():
    c = Conversation([Message("system", "s"), Message("user", "q"), Message("assistant", "call"),
                      Message("tool", "42", name="calc"), Message("assistant", "It is 42.")]).validate()
    again = Conversation.from_messages(c.to_messages())
    assert again.messages == c.messages and again.system == "s" and again.last_assistant == "It is 42."


def test_error_location_added_by_reader():
    e = DataError("assistant turn is empty", field="messages[1].content", reason="empty_assistant")
    located = e.at("data.jsonl", 7)
    assert str(located) == "data.jsonl:7: field 'messages[1].content': assistant turn is empty"
    assert located.reason == "empty_assistant"
