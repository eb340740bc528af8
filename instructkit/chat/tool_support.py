"""Can a chat template render tool use? Two probes shared by the renderer (which refuses to train or run
tool calls through a template that cannot) and ``instructkit data template-check`` (which reports it).

Kept apart from both so neither imports the other: the probes only need a renderer object.
"""

from __future__ import annotations

from typing import Any

from instructkit.chat.conversation import ToolCall

PROBE_TOOL = {"type": "function", "function": {
    "name": "probe_lookup_fn", "description": "Look a word up.",
    "parameters": {"type": "object", "properties": {"word": {"type": "string"}}, "required": ["word"]}}}


def _tools_problem(renderer: Any) -> str | None:
    user = [{"role": "user", "content": "hi"}]
    try:
        if renderer.apply(user, tools=[PROBE_TOOL]) == renderer.apply(user):
            return "it ignores tools= (the tool schemas never reach the model)"
    except Exception as e:
        return f"it fails when given tools= ({type(e).__name__}: {e})"
    return None


def _calls_problem(renderer: Any) -> str | None:
    user = [{"role": "user", "content": "hi"}]
    call = {"role": "assistant", "content": "",
            "tool_calls": [ToolCall("probe_lookup_fn", {"word": "zebu"}).to_dict()]}
    try:
        renderer.apply(user + [dict(call, content=None)])
        text = renderer.apply(user + [call])
    except Exception as e:  # a Jinja error in the user's template is the finding, not a crash
        return f"it fails on an assistant turn with tool_calls and no content ({type(e).__name__}: {e})"
    if "probe_lookup_fn" not in text or "zebu" not in text:
        return "it drops an assistant turn's tool_calls (the call is not in the rendered text)"
    return None


def tool_support_problem(renderer: Any) -> str | None:
    """Why ``renderer``'s template cannot render tool use, or None when it can."""
    return _tools_problem(renderer) or _calls_problem(renderer)
