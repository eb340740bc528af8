"""Tool calls in source records: OpenAI ``tool_calls``/``tool`` turns, ShareGPT ``function_call``/
``observation`` turns (LLaMA-Factory, Glaive), Hermes ``<tool_call>`` text; the record's ``tools`` list.

The format converters (:mod:`instructkit.data.formats`) build each turn as usual and pass it through
:func:`with_tool_fields`, which reads the tool parts into the structured :class:`Message` fields:

* OpenAI: ``{"role": "assistant", "content": null, "tool_calls": [{"id", "type", "function": {"name",
  "arguments": "<JSON string>"}}]}`` and ``{"role": "tool", "tool_call_id", "content"}``;
* ShareGPT ``function_call`` turns hold the call as JSON text (``{"name", "arguments"}`` or a list of
  them, parallel calls; a value that is not JSON-shaped stays plain assistant text); ``observation``
  turns hold the result;
* an assistant turn whose text carries Hermes ``<tool_call>{...}</tool_call>`` blocks (NousResearch
  hermes-function-calling, Glaive in Hermes form) gets them as calls, the rest stays its content; a
  tool turn wrapped in ``<tool_response>...</tool_response>`` loses the wrapper (the tools-aware
  template adds it back);
* ``tools``: a list (or, as LLaMA-Factory writes it, a JSON string of a list) of OpenAI tool schemas
  or bare function definitions (wrapped into ``{"type": "function", "function": ...}``).

A malformed call is a :class:`DataError` naming the source field (``conversations[3].value``,
``messages[2].tool_calls[0].function.arguments``), never dropped.
"""

from __future__ import annotations

import json
import re
from typing import Any

from instructkit.chat.conversation import Message, ToolCall
from instructkit.errors import DataError

_RESPONSE = re.compile(r"^\s*<tool_response>\s*(.*?)\s*</tool_response>\s*$", re.S)


def with_tool_fields(msg: Message, turn: dict[str, Any], prefix: str, text_key: str = "content") -> Message:
    """``msg`` with ``tool_calls``/``tool_call_id`` read from its source ``turn`` (``prefix``: ``messages[2].``)."""
    calls = turn.get("tool_calls")
    if calls is not None:
        if not isinstance(calls, list):
            raise DataError(f"expected a list, got {type(calls).__name__}", field=prefix + "tool_calls",
                            reason="wrong_type")
        msg.tool_calls = [ToolCall.from_dict(c, f"{prefix}tool_calls[{j}]") for j, c in enumerate(calls)] or None
    if isinstance(turn.get("tool_call_id"), str):
        msg.tool_call_id = turn["tool_call_id"]
    if (msg.role == "assistant" and turn.get("from") == "function_call" and not msg.tool_calls
            and msg.content.lstrip()[:1] in ("{", "[")):  # plain-text calls stay text, as before
        msg.tool_calls, msg.content = _function_call_value(msg.content, prefix + text_key), ""
    elif msg.role == "assistant" and "<tool_call>" in msg.content and not msg.tool_calls:
        from instructkit.chat.tool_parsers import get_parser

        parsed = get_parser("hermes").parse(msg.content)
        if parsed.errors:
            raise DataError(f"malformed <tool_call>: {parsed.errors[0]}", field=prefix + text_key,
                            reason="wrong_type")
        msg.content, msg.tool_calls = parsed.content, parsed.calls
    elif msg.role == "tool":
        m = _RESPONSE.match(msg.content)
        if m:
            msg.content = m.group(1)
    return msg


def _function_call_value(text: str, field: str) -> list[ToolCall]:
    try:
        val = json.loads(text)
    except ValueError as e:
        raise DataError(f"function_call value is not JSON: {e}", field=field, reason="wrong_type") from None
    items = val if isinstance(val, list) else [val]
    if not items:
        raise DataError("function_call holds no call", field=field, reason="empty_assistant")
    return [ToolCall.from_dict(c, field if len(items) == 1 else f"{field}[{j}]") for j, c in enumerate(items)]


def record_tools(rec: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The record's ``tools`` as OpenAI tool schemas (None when it has none)."""
    tools = rec.get("tools")
    if tools is None or tools == "" or tools == []:
        return None
    if isinstance(tools, str):
        try:
            tools = json.loads(tools)
        except ValueError as e:
            raise DataError(f"tools is not JSON: {e}", field="tools", reason="wrong_type") from None
    if not isinstance(tools, list):
        raise DataError(f"expected a list of tool schemas, got {type(tools).__name__}", field="tools",
                        reason="wrong_type")
    out = []
    for i, t in enumerate(tools):
        if not isinstance(t, dict):
            raise DataError(f"expected an object, got {type(t).__name__}", field=f"tools[{i}]", reason="wrong_type")
        fn = t.get("function", t)
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str):
            raise DataError("tool schema has no function name", field=f"tools[{i}].name", reason="missing_field")
        out.append(t if "function" in t else {"type": "function", "function": t})
    return out
