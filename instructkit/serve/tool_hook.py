"""Tool calling in the OpenAI-compatible server (``ServerState.tool_hook``).

The chat handler asks the hook for the prompt and a reply parser whenever a request carries ``tools``
or earlier ``tool_calls``/``tool`` turns. The hook renders the tool schemas and structured turns with
the server's chat template (which must be tools-aware: ``--chat-template chatml_tools``), and parses the
generated text into OpenAI's reply shape: ``content`` (null when the turn only calls tools),
``tool_calls`` with ids and JSON-string arguments, and ``finish_reason: "tool_calls"``, as the API does.
``tool_choice: "none"`` renders the tools but returns text only; ``"required"`` or a named function
cannot be enforced without constrained decoding and is refused with a 400. Streaming with tools is
refused too (the reply must be parsed whole). The client runs the calls (``instructkit chat --tools``
does, with :func:`instructkit.toolset.loop.execute_calls`), unless the server runs its own toolset
(``--run-tools``: ``server`` is a :class:`~instructkit.serve.tools.ServerTools`; every chat
request is offered those tools and the server runs the loop, see :mod:`.serve_tools`).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from instructkit.chat.conversation import Message, ToolCall
from instructkit.errors import InstructkitError


class ToolHook:
    def __init__(self, renderer: Any, parser: str = "hermes", server: Any = None):
        from instructkit.chat.tool_parsers import get_parser

        self.renderer, self.parser, self.server = renderer, get_parser(parser), server

    def wants(self, body: Any, messages: list[dict[str, Any]]) -> bool:
        """Whether this request involves tools (its own ``tools``, earlier tool-call turns, or the
        server's own toolset, offered to every chat request)."""
        return bool(self.server or body.tools or any(m.get("tool_calls") for m in messages))

    def tools_of(self, body: Any) -> list[dict[str, Any]] | None:
        if self.server is not None:
            if body.tools:
                raise ValueError("this server runs its own tools (--run-tools "
                                 f"{','.join(self.server.toolset.tools)}): send the request without 'tools'")
            return self.server.toolset.schemas or None
        return list(body.tools) if body.tools else None

    def __call__(self, body: Any, messages: list[dict[str, Any]]) -> tuple[str, Optional[Callable[[str], dict]]]:
        """``(prompt_text, parse)``; ``parse(text) -> {"content", "tool_calls", "finish_reason"?}``.

        Raises ``ValueError`` with an API-facing message on a request it cannot honour.
        """
        choice = body.tool_choice
        if isinstance(choice, dict) or choice == "required":
            raise ValueError("tool_choice: only 'auto' and 'none' are supported (forcing a call needs "
                             "constrained decoding)")
        try:
            msgs = [Message.from_dict(m, i).to_dict() for i, m in enumerate(messages)]
        except InstructkitError as e:  # e.g. tool_calls arguments that are not JSON
            raise ValueError(str(e)) from None
        try:
            text = self.renderer.prompt_text(msgs, tools=self.tools_of(body))
        except InstructkitError as e:
            raise ValueError(f"{e} (start the server with --chat-template chatml_tools)") from None
        return text, (None if choice == "none" else self.parse)

    def parse(self, text: str) -> dict[str, Any]:
        p = self.parser.parse(text)
        if not p.calls:
            return {"content": text if p.errors else p.content, "tool_calls": None}
        calls = [ToolCall(c.name, c.arguments, c.id or _call_id()).to_openai() for c in p.calls]
        return {"content": p.content or None, "tool_calls": calls, "finish_reason": "tool_calls"}


def _call_id() -> str:
    import uuid
    return "call_" + uuid.uuid4().hex[:24]


def reply(text: str, finish_reason: str, parse: Optional[Callable[[str], dict]]) -> tuple[dict[str, Any], str]:
    """The assistant message and finish reason of one choice (plain text when ``parse`` is None)."""
    if parse is None:
        return {"role": "assistant", "content": text, "refusal": None}, finish_reason
    r = parse(text)
    msg: dict[str, Any] = {"role": "assistant", "content": r["content"], "refusal": None}
    if r.get("tool_calls"):
        msg["tool_calls"] = r["tool_calls"]
    return msg, r.get("finish_reason", finish_reason)
