"""The one conversation type of instructkit.

Every reader (Alpaca, ShareGPT, OpenAI messages, prompt/completion), every task template and every
synthetic-data generator produces a :class:`Conversation`; the renderer turns it into tokens with a
loss mask. Nothing else in the pipeline knows about source formats.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Iterable

from instructkit.errors import DataError

ROLES = ("system", "user", "assistant", "tool")


@dataclass
class ToolCall:
    """One function call an assistant turn makes (OpenAI shape: id, function name, JSON arguments).

    ``arguments`` is the parsed JSON value (normally an object): chat templates serialise it with
    ``tojson`` and parsers give it back parsed, so ``parse(render(x)) == x`` compares values, not text.
    """

    name: str
    arguments: Any = field(default_factory=dict)
    id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The form HF chat templates take (``function.arguments`` as an object)."""
        d: dict[str, Any] = {"type": "function", "function": {"name": self.name, "arguments": self.arguments}}
        if self.id is not None:
            d["id"] = self.id
        return d

    def to_openai(self) -> dict[str, Any]:
        """The OpenAI API form (``function.arguments`` as a JSON string)."""
        return {"id": self.id or "", "type": "function",
                "function": {"name": self.name, "arguments": json.dumps(self.arguments, ensure_ascii=False)}}

    @classmethod
    def from_dict(cls, d: Any, field_name: str = "tool_calls[0]") -> "ToolCall":
        """Read an OpenAI (``{"function": {"name", "arguments": str|obj}}``) or flat (``{"name", "arguments"}``)
        call; raise :class:`DataError` naming the field on a bad one."""
        if not isinstance(d, dict):
            raise DataError(f"expected an object, got {type(d).__name__}", field=field_name, reason="wrong_type")
        fn = d.get("function", d)
        where = f"{field_name}.function" if "function" in d else field_name
        if not isinstance(fn, dict) or not isinstance(fn.get("name"), str) or not fn["name"]:
            raise DataError("tool call has no function name", field=f"{where}.name", reason="missing_field")
        args = fn.get("arguments", fn.get("parameters", {}))
        if isinstance(args, str):
            try:
                args = json.loads(args) if args.strip() else {}
            except ValueError as e:
                raise DataError(f"arguments are not valid JSON: {e}", field=f"{where}.arguments",
                                reason="wrong_type") from None
        cid = d.get("id")
        return cls(fn["name"], args, str(cid) if cid not in (None, "") else None)


@dataclass
class Message:
    role: str
    content: str
    #: tool name for ``tool`` turns (and the tool called, if a caller wants to record it)
    name: str | None = None
    #: override the default loss rule for this turn: None = train iff role == "assistant"
    train: bool | None = None
    #: calls an assistant turn makes (trained like its text; the results come as ``tool`` turns)
    tool_calls: list[ToolCall] | None = None
    #: for ``tool`` turns: the id of the call this result answers
    tool_call_id: str | None = None

    @property
    def trained(self) -> bool:
        return self.role == "assistant" if self.train is None else self.train

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.name is not None:
            d["name"] = self.name
        if self.train is not None:
            d["train"] = self.train
        if self.tool_calls:
            d["tool_calls"] = [c.to_dict() for c in self.tool_calls]
        if self.tool_call_id is not None:
            d["tool_call_id"] = self.tool_call_id
        return d

    def to_openai(self) -> dict[str, Any]:
        """OpenAI API message (tool-call-only assistant turns have ``content: null``)."""
        d: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            d["tool_calls"] = [c.to_openai() for c in self.tool_calls]
            d["content"] = self.content or None
        if self.tool_call_id is not None:
            d["tool_call_id"] = self.tool_call_id
        if self.name is not None and self.role == "tool":
            d["name"] = self.name
        return d

    @classmethod
    def from_dict(cls, m: dict[str, Any], i: int = 0) -> "Message":
        calls = m.get("tool_calls")
        if calls is not None and not isinstance(calls, list):
            raise DataError(f"expected a list, got {type(calls).__name__}", field=f"messages[{i}].tool_calls",
                            reason="wrong_type")
        tcs = [ToolCall.from_dict(c, f"messages[{i}].tool_calls[{j}]") for j, c in enumerate(calls or [])]
        content = m.get("content")
        return cls(m["role"], "" if content is None and tcs else content, m.get("name"), m.get("train"),
                   tcs or None, m.get("tool_call_id"))


@dataclass
class Conversation:
    messages: list[Message]
    id: str | None = None
    #: provenance and task metadata: source file/line, task, template, cluster, ...
    meta: dict[str, Any] = field(default_factory=dict)
    #: JSON schemas of the tools the model may call (OpenAI ``tools`` list); rendered by tools-aware templates
    tools: list[dict[str, Any]] | None = None

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_pairs(cls, prompt: str, completion: str, system: str | None = None, **meta: Any) -> "Conversation":
        msgs = [Message("system", system)] if system else []
        msgs += [Message("user", prompt), Message("assistant", completion)]
        return cls(msgs, meta=dict(meta))

    @classmethod
    def from_messages(cls, messages: Iterable[dict[str, Any]], tools: list[dict[str, Any]] | None = None,
                      **meta: Any) -> "Conversation":
        return cls([Message.from_dict(m, i) for i, m in enumerate(messages)], meta=dict(meta), tools=tools)

    def to_messages(self) -> list[dict[str, Any]]:
        """OpenAI-style list of dicts (what ``tokenizer.apply_chat_template`` takes)."""
        return [m.to_dict() for m in self.messages]

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"messages": self.to_messages()}
        if self.id is not None:
            d["id"] = self.id
        if self.tools:
            d["tools"] = self.tools
        if self.meta:
            d["meta"] = self.meta
        return d

    # -- accessors ------------------------------------------------------------------------------
    @property
    def system(self) -> str | None:
        return self.messages[0].content if self.messages and self.messages[0].role == "system" else None

    def turns(self, role: str) -> list[Message]:
        return [m for m in self.messages if m.role == role]

    @property
    def last_assistant(self) -> str | None:
        a = self.turns("assistant")
        return a[-1].content if a else None

    # -- validation -----------------------------------------------------------------------------
    def validate(self, *, require_assistant: bool = True) -> "Conversation":
        """Check the structure; raise :class:`DataError` naming the offending field.

        Rules: known roles; system only first; after the optional system turn, user and assistant
        alternate starting with user, except that tool turns may follow an assistant turn (the tool
        result) and are followed by an assistant turn; assistant turns are non-empty; a training
        conversation has at least one assistant turn.
        """
        if not self.messages:
            raise DataError("conversation has no messages", field="messages", reason="empty_conversation")
        prev = None
        for i, m in enumerate(self.messages):
            f = f"messages[{i}]"
            if m.role not in ROLES:
                raise DataError(f"unknown role {m.role!r} (expected one of {', '.join(ROLES)})",
                                field=f"{f}.role", reason="unknown_role")
            if not isinstance(m.content, str):
                raise DataError(f"content must be a string, got {type(m.content).__name__}",
                                field=f"{f}.content", reason="wrong_type")
            if m.role == "system":
                if i != 0:
                    raise DataError("system turn is only allowed first", field=f"{f}.role",
                                    reason="non_alternating")
            elif m.role == "user":
                if prev not in (None, "system", "assistant"):
                    raise DataError(f"user turn follows a {prev} turn (turns must alternate)",
                                    field=f"{f}.role", reason="non_alternating")
            elif m.role == "assistant":
                if prev not in ("user", "tool"):
                    raise DataError(f"assistant turn follows {prev or 'nothing'} (turns must alternate)",
                                    field=f"{f}.role", reason="non_alternating")
                if not m.content.strip() and not m.tool_calls:
                    raise DataError("assistant turn is empty", field=f"{f}.content",
                                    reason="empty_assistant")
            elif m.role == "tool":
                if prev not in ("assistant", "tool"):
                    raise DataError(f"tool turn follows {prev or 'nothing'} (it must answer an assistant call)",
                                    field=f"{f}.role", reason="non_alternating")
            if m.tool_calls and m.role != "assistant":
                raise DataError("only assistant turns make tool calls", field=f"{f}.tool_calls", reason="wrong_type")
            prev = m.role
        if require_assistant and not any(m.role == "assistant" for m in self.messages):
            raise DataError("conversation has no assistant turn to train on", field="messages",
                            reason="no_assistant")
        return self
