"""The one conversation type of instructkit.

Every reader (Alpaca, ShareGPT, OpenAI messages, prompt/completion), every task template and every
synthetic-data generator produces a :class:`Conversation`; the renderer turns it into tokens with a
loss mask. Nothing else in the pipeline knows about source formats.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from instructkit.errors import DataError

ROLES = ("system", "user", "assistant", "tool")


@dataclass
class Message:
    role: str
    content: str
    #: tool name for ``tool`` turns (and the tool called, if a caller wants to record it)
    name: str | None = None
    #: override the default loss rule for this turn: None = train iff role == "assistant"
    train: bool | None = None

    @property
    def trained(self) -> bool:
        return self.role == "assistant" if self.train is None else self.train

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.name is not None:
            d["name"] = self.name
        if self.train is not None:
            d["train"] = self.train
        return d


@dataclass
class Conversation:
    messages: list[Message]
    id: str | None = None
    #: provenance and task metadata: source file/line, task, template, cluster, ...
    meta: dict[str, Any] = field(default_factory=dict)

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_pairs(cls, prompt: str, completion: str, system: str | None = None, **meta: Any) -> "Conversation":
        msgs = [Message("system", system)] if system else []
        msgs += [Message("user", prompt), Message("assistant", completion)]
        return cls(msgs, meta=dict(meta))

    @classmethod
    def from_messages(cls, messages: Iterable[dict[str, Any]], **meta: Any) -> "Conversation":
        return cls([Message(m["role"], m["content"], m.get("name"), m.get("train")) for m in messages],
                   meta=dict(meta))

    def to_messages(self) -> list[dict[str, Any]]:
        """OpenAI-style list of dicts (what ``tokenizer.apply_chat_template`` takes)."""
        return [m.to_dict() for m in self.messages]

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"messages": self.to_messages()}
        if self.id is not None:
            d["id"] = self.id
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
                if not m.content.strip():
                    raise DataError("assistant turn is empty", field=f"{f}.content",
                                    reason="empty_assistant")
            elif m.role == "tool":
                if prev not in ("assistant", "tool"):
                    raise DataError(f"tool turn follows {prev or 'nothing'} (it must answer an assistant call)",
                                    field=f"{f}.role", reason="non_alternating")
            prev = m.role
        if require_assistant and not any(m.role == "assistant" for m in self.messages):
            raise DataError("conversation has no assistant turn to train on", field="messages",
                            reason="no_assistant")
        return self
