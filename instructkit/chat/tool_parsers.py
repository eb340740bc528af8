"""Tool-call text formats, one formatter and parser per model family.

``format(content, calls) -> text`` writes what a model of that family emits; ``parse(text)`` gives
back ``Parsed(content, calls, errors)``, and ``parse(format(c, calls)) == (c, calls)`` for stripped
content that does not itself contain the family's markers (tested over generated calls: unicode,
nested JSON, parallel calls). Arguments are read with ``json.JSONDecoder.raw_decode`` at the marker,
not with a regex, so braces or closing tags inside string arguments cannot cut a call short. A call
block that does not parse is reported in ``errors`` (counted as a failed call by the loop), never
dropped silently.

* ``hermes``: ``<tool_call>\\n{"name": ..., "arguments": {...}}\\n</tool_call>`` blocks after the text
  (Hermes 2 Pro, Qwen2.5; the shipped ``chatml_tools`` template renders exactly this);
* ``llama3_json``: ``{"name": ..., "parameters": {...}}`` objects at the end of the turn, ``; ``
  between parallel calls, optional ``<|python_tag|>`` (Llama 3.1 JSON tool calling, vLLM's parser);
* ``mistral``: ``[TOOL_CALLS][{"name", "arguments", "id"?}, ...]`` after the text;
* ``react``: ``Thought: ...`` then ``Action: name`` / ``Action Input: {json}`` pairs; a turn without
  actions is ``Final Answer: ...``; the tool result comes back as ``Observation:`` (a stop string).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from instructkit.chat.conversation import ToolCall
from instructkit.errors import InstructkitError

_DEC = json.JSONDecoder()


@dataclass
class Parsed:
    content: str
    calls: list[ToolCall] = field(default_factory=list)
    #: call blocks that were started but are not valid (unparseable JSON, no name, ...)
    errors: list[str] = field(default_factory=list)


def _dumps(x: Any) -> str:
    return json.dumps(x, ensure_ascii=False)


def _json_at(text: str, i: int) -> tuple[Any, int]:
    """The JSON value starting at ``text[i:]`` (leading whitespace skipped) and the index after it."""
    while i < len(text) and text[i] in " \t\r\n":
        i += 1
    return _DEC.raw_decode(text, i)


def _call(obj: Any, args_key: str = "arguments") -> ToolCall:
    if not isinstance(obj, dict) or not isinstance(obj.get("name"), str) or not obj["name"]:
        raise ValueError("a call must be an object with a non-empty string 'name'")
    args = obj.get(args_key, obj.get("arguments", obj.get("parameters", {})))
    if isinstance(args, str):  # some models double-encode the arguments
        try:
            args = json.loads(args)
        except ValueError:
            pass
    cid = obj.get("id")
    return ToolCall(obj["name"], args, str(cid) if cid is not None else None)


# -- hermes ------------------------------------------------------------------------------------------
class Hermes:
    name = "hermes"
    OPEN, CLOSE = "<tool_call>", "</tool_call>"
    stop: list[str] = []

    def format(self, content: str, calls: list[ToolCall]) -> str:
        blocks = [f"{self.OPEN}\n{_dumps({'name': c.name, 'arguments': c.arguments})}\n{self.CLOSE}" for c in calls]
        return "\n".join(([content] if content else []) + blocks)

    def parse(self, text: str) -> Parsed:
        out = Parsed("")
        kept, pos = [], 0
        while True:
            i = text.find(self.OPEN, pos)
            if i < 0:
                kept.append(text[pos:])
                break
            kept.append(text[pos:i])
            j = i + len(self.OPEN)
            try:
                obj, end = _json_at(text, j)
                out.calls.append(_call(obj))
                k = text.find(self.CLOSE, end)
                if k >= 0 and not text[end:k].strip():
                    pos = k + len(self.CLOSE)
                else:  # the model stopped before the closing tag: accept the call
                    pos = end
            except ValueError as e:
                k = text.find(self.CLOSE, j)
                pos = k + len(self.CLOSE) if k >= 0 else len(text)
                out.errors.append(f"{text[i:pos][:200]!r}: {e}")
        out.content = "".join(kept).strip()
        return out


# -- llama 3 json -------------------------------------------------------------------------------------
class Llama3Json:
    name = "llama3_json"
    TAG = "<|python_tag|>"
    stop: list[str] = []

    def format(self, content: str, calls: list[ToolCall]) -> str:
        body = "; ".join(_dumps({"name": c.name, "parameters": c.arguments}) for c in calls)
        return "\n".join(x for x in (content, body) if x)

    def _tail_calls(self, text: str, i: int) -> list[ToolCall] | None:
        calls = []
        while True:
            obj, i = _json_at(text, i)
            calls.append(_call(obj, "parameters"))
            rest = text[i:].lstrip()
            if not rest:
                return calls
            if not rest.startswith(";"):
                return None
            i = len(text) - len(rest) + 1

    def parse(self, text: str) -> Parsed:
        t = text.replace(self.TAG, "")
        for m in re.finditer(r"\{", t):
            try:
                calls = self._tail_calls(t, m.start())
            except ValueError:
                continue
            if calls:
                return Parsed(t[: m.start()].strip(), calls)
        out = Parsed(t.strip())
        if self.TAG in text or re.search(r'\{\s*"name"\s*:', t):
            out.errors.append(f"unparseable tool call: {t[-200:]!r}")
        return out


# -- mistral ------------------------------------------------------------------------------------------
class Mistral:
    name = "mistral"
    TAG = "[TOOL_CALLS]"
    stop: list[str] = []

    def format(self, content: str, calls: list[ToolCall]) -> str:
        objs = [{"name": c.name, "arguments": c.arguments, **({"id": c.id} if c.id is not None else {})}
                for c in calls]
        return content + (self.TAG + _dumps(objs) if calls else "")

    def parse(self, text: str) -> Parsed:
        i = text.find(self.TAG)
        if i < 0:
            return Parsed(text.strip())
        out = Parsed(text[:i].strip())
        try:
            objs, _ = _json_at(text, i + len(self.TAG))
            out.calls = [_call(o) for o in (objs if isinstance(objs, list) else [objs])]
        except ValueError as e:
            out.errors.append(f"{text[i:][:200]!r}: {e}")
        return out


# -- ReAct ---------------------------------------------------------------------------------------------
class ReAct:
    name = "react"
    stop = ["\nObservation:"]
    _ACTION = re.compile(r"^Action:[ \t]*(\S[^\n]*?)[ \t]*\nAction Input:", re.M)

    def format(self, content: str, calls: list[ToolCall]) -> str:
        if not calls:
            return f"Final Answer: {content}"
        acts = "\n".join(f"Action: {c.name}\nAction Input: {_dumps(c.arguments)}" for c in calls)
        return (f"Thought: {content}\n" if content else "") + acts

    def parse(self, text: str) -> Parsed:
        acts = list(self._ACTION.finditer(text))
        if not acts:
            fa = text.rfind("Final Answer:")
            return Parsed((text[fa + len("Final Answer:"):] if fa >= 0 else text).strip())
        head = text[: acts[0].start()].strip()
        out = Parsed(head[len("Thought:"):].strip() if head.startswith("Thought:") else head)
        for m in acts:
            # Action Input is JSON, or (original ReAct) free text up to the end of the line
            eol = text.find("\n", m.end())
            line = text[m.end(): eol if eol >= 0 else len(text)].strip()
            try:
                args, end = _json_at(text, m.end())
                if text[end: eol if eol >= end else len(text)].strip():
                    raise ValueError("text after the JSON value")
            except ValueError:
                args = line
            if args == "":
                out.errors.append(f"{m.group(0)!r}: empty Action Input")
            else:
                out.calls.append(ToolCall(m.group(1), args))
        return out


PARSERS: dict[str, Callable[[], Any]] = {"hermes": Hermes, "llama3_json": Llama3Json, "mistral": Mistral,
                                          "react": ReAct}


def get_parser(name: str) -> Any:
    if name not in PARSERS:
        raise InstructkitError(f"unknown tool-call format {name!r} (expected one of {', '.join(PARSERS)})")
    return PARSERS[name]()
