"""Record formats: one converter per source format, each turning a parsed JSON record into a Conversation.

Formats (``FORMATS``; :func:`detect_record_format` picks one from a record's keys):

* ``alpaca``: ``{"instruction", "input"?, "output", "system"?}``. The user turn is the instruction, plus
  ``"\\n\\n" + input`` when input is non-empty (the Alpaca/LLaMA-Factory convention).
  LLaMA-Factory's ``history`` (``[[instruction, response], ...]``, earlier turns) becomes turns before it.
* ``sharegpt``: ``{"conversations": [{"from", "value"}], "system"?}``. ``from`` is mapped by
  :data:`SHAREGPT_ROLES` (the union of what FastChat, LLaMA-Factory and Axolotl accept):
  human/user -> user; gpt/assistant/chatgpt/bing/bard/model -> assistant; system -> system;
  function_call -> assistant (the model's call is trained like any assistant turn);
  observation/tool/function_response -> tool (the tool's answer, not trained).
  Repairs (counted in the report, never silent): share-site banners in system turns
  (``*This conversation is shared from ChatHub*``) are dropped (``dropped_share_banner``); a conversation
  that starts with an assistant turn (a split conversation) loses that turn, as FastChat does
  (``repaired_leading_assistant``; ``repair_leading_assistant=False`` rejects it instead).
* ``openai``: ``{"messages": [{"role", "content", "name"?}]}``; ``developer`` is read as ``system`` and
  ``function`` as ``tool``; content may be a string or a list of ``{"type": "text", "text"}`` parts.
* ``prompt_completion``: ``{"prompt", "completion"}``. A trailing literal ``<|endoftext|>`` is stripped
  from the completion (the T0 mixture files end every completion with it): the chat template appends
  the model's own end-of-turn/EOS token, so keeping the literal would train the model to *write* the
  text ``<|endoftext|>`` and then stop.

Every converter raises :class:`DataError` with a ``field`` in the *source* record's terms
(``conversations[2].from``, ``output``) and a stable ``reason`` (see :data:`REASONS`).
"""

from __future__ import annotations

import re
from typing import Any, Callable

from instructkit.chat.conversation import Conversation, Message
from instructkit.data.tool_records import record_tools, with_tool_fields
from instructkit.errors import DataError

#: reasons a record can be rejected for; SkipReport counts by these
REASONS = ("invalid_json", "invalid_encoding", "invalid_unicode", "too_deep", "missing_field", "wrong_type",
           "unknown_role", "empty_assistant", "non_alternating", "no_assistant", "empty_conversation",
           "unknown_format", "no_trained_tokens", "too_long")

EOS_MARKER = "<|endoftext|>"

SHAREGPT_ROLES = {
    "human": "user", "user": "user",
    "gpt": "assistant", "assistant": "assistant", "chatgpt": "assistant", "bing": "assistant",
    "bard": "assistant", "model": "assistant", "function_call": "assistant",
    "system": "system",
    "observation": "tool", "tool": "tool", "function_response": "tool",
}
OPENAI_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant",
                "tool": "tool", "function": "tool"}


def _get(rec: dict[str, Any], key: str, types: type | tuple[type, ...] = str, *, required: bool = True,
         prefix: str = "") -> Any:
    if key not in rec or rec[key] is None:
        if required:
            raise DataError(f"missing required field {key!r}", field=prefix + key, reason="missing_field")
        return None
    val = rec[key]
    if not isinstance(val, types):
        want = types.__name__ if isinstance(types, type) else " or ".join(t.__name__ for t in types)
        raise DataError(f"expected {want}, got {type(val).__name__}", field=prefix + key, reason="wrong_type")
    return val


_MSG_FIELD = re.compile(r"^messages\[(\d+)\](.*)$")


def _validated(conv: Conversation, fields: list[str], suffixes: dict[str, str] | None = None) -> Conversation:
    """``conv.validate()`` with the error's ``messages[i].x`` field renamed to the source field of message i.

    ``suffixes`` renames ``.role``/``.content`` (ShareGPT: ``.from``/``.value``); None drops them (flat
    formats, where message i *is* a field such as ``output``).
    """
    try:
        return conv.validate()
    except DataError as e:
        m = _MSG_FIELD.match(e.field or "")
        if m and int(m.group(1)) < len(fields):
            suffix = "" if suffixes is None else suffixes.get(m.group(2), m.group(2))
            e = DataError(e.detail, field=fields[int(m.group(1))] + suffix, reason=e.reason)
        raise e from None


def _history(rec: dict[str, Any]) -> tuple[list[Message], list[str]]:
    """LLaMA-Factory's ``history``: earlier ``[instruction, response]`` pairs, read as turns before this one."""
    hist = _get(rec, "history", list, required=False) or []
    msgs, fields = [], []
    for i, pair in enumerate(hist):
        if not (isinstance(pair, list) and len(pair) == 2):
            raise DataError("expected an [instruction, response] pair", field=f"history[{i}]", reason="wrong_type")
        for j, role in enumerate(("user", "assistant")):
            if not isinstance(pair[j], str):
                raise DataError(f"expected str, got {type(pair[j]).__name__}", field=f"history[{i}][{j}]",
                                reason="wrong_type")
            msgs.append(Message(role, pair[j]))
            fields.append(f"history[{i}][{j}]")
    return msgs, fields


def from_alpaca(rec: dict[str, Any]) -> Conversation:
    instruction = _get(rec, "instruction")
    inp = _get(rec, "input", required=False) or ""
    output = _get(rec, "output")
    system = _get(rec, "system", required=False)
    hist, hist_fields = _history(rec)
    user = f"{instruction}\n\n{inp}" if inp.strip() else instruction
    msgs = ([Message("system", system)] if system else []) + hist + [Message("user", user),
                                                                      Message("assistant", output)]
    fields = (["system"] if system else []) + hist_fields + ["instruction", "output"]
    # the generic validator would say "messages[1].content"; an empty output is the alpaca field "output"
    return _validated(Conversation(msgs), fields)


def _turns(rec: dict[str, Any], key: str, role_key: str, text_key: str, roles: dict[str, str],
           content: Callable[[Any, str], str], drop: frozenset[int] = frozenset()) -> Conversation:
    turns = _get(rec, key, list)
    if not turns:
        raise DataError("conversation has no turns", field=key, reason="empty_conversation")
    system = _get(rec, "system", required=False)
    msgs, fields = ([Message("system", system)], ["system"]) if system else ([], [])
    for i, t in enumerate(turns):
        if i in drop:  # repaired away by the caller (counted there); fields keep the source indices
            continue
        pre = f"{key}[{i}]."
        if not isinstance(t, dict):
            raise DataError(f"expected an object, got {type(t).__name__}", field=f"{key}[{i}]", reason="wrong_type")
        who = _get(t, role_key, prefix=pre)
        if who not in roles:
            raise DataError(f"unknown role {who!r} (expected one of {', '.join(sorted(roles))})",
                            field=pre + role_key, reason="unknown_role")
        if system and roles[who] == "system" and len(msgs) == 1:  # both are "first": name the clash
            raise DataError(f"two system prompts: the record's top-level 'system' field and this first turn "
                            f"({role_key}: {who!r}); keep one of them", field=pre + role_key,
                            reason="two_system_prompts")
        text = content(t.get(text_key), pre + text_key) if text_key in t else _get(t, text_key, prefix=pre)
        name = t.get("name") if isinstance(t.get("name"), str) else None
        msgs.append(with_tool_fields(Message(roles[who], text, name), t, pre, text_key))
        fields.append(f"{key}[{i}]")
    return _validated(Conversation(msgs, tools=record_tools(rec)), fields,
                      {".role": "." + role_key, ".content": "." + text_key})


def _plain_text(val: Any, field: str) -> str:
    if isinstance(val, str):
        return val
    raise DataError(f"expected str, got {type(val).__name__}", field=field, reason="wrong_type")


def _openai_content(val: Any, field: str) -> str:
    # content parts: [{"type": "text", "text": ...}]; non-text parts (images) cannot be trained here
    if isinstance(val, list):
        parts = []
        for j, p in enumerate(val):
            if not (isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)):
                raise DataError("only text content parts are supported", field=f"{field}[{j}]", reason="wrong_type")
            parts.append(p["text"])
        return "".join(parts)
    if val is None:  # an assistant turn that only calls tools has content null
        return ""
    return _plain_text(val, field)


#: "*This conversation is shared from ChatHub*"-style banners that share sites put in a system turn
SHARE_BANNER = re.compile(r"^\W*this conversation (is|was) shared (from|via|with|on)\b", re.IGNORECASE)


def _sharegpt_repairs(turns: Any, repair_leading_assistant: bool) -> tuple[frozenset[int], list[str]]:
    """Turns to drop and why: share banners in system turns (not system prompts) and, like FastChat, the
    assistant turn a split conversation starts with (its question is in the previous part)."""
    if not isinstance(turns, list):
        return frozenset(), []
    drop, repairs = set(), []
    for i, t in enumerate(turns):
        if (isinstance(t, dict) and SHAREGPT_ROLES.get(t.get("from")) == "system"
                and isinstance(t.get("value"), str) and SHARE_BANNER.match(t["value"])):
            drop.add(i)
            repairs.append("dropped_share_banner")
    if repair_leading_assistant:
        rest = [i for i, t in enumerate(turns) if i not in drop and not (
            isinstance(t, dict) and SHAREGPT_ROLES.get(t.get("from")) == "system")]
        first = turns[rest[0]] if rest else None
        if isinstance(first, dict) and SHAREGPT_ROLES.get(first.get("from")) == "assistant" and len(rest) > 1:
            drop.add(rest[0])
            repairs.append("repaired_leading_assistant")
    return frozenset(drop), repairs


def from_sharegpt(rec: dict[str, Any], repair_leading_assistant: bool = True) -> Conversation:
    """``repair_leading_assistant`` (default on): drop a leading assistant turn instead of rejecting the
    record (counted as ``repaired_leading_assistant``); share banners are always dropped and counted."""
    drop, repairs = _sharegpt_repairs(rec.get("conversations"), repair_leading_assistant)
    conv = _turns(rec, "conversations", "from", "value", SHAREGPT_ROLES, _plain_text, drop)
    if repairs:
        conv.meta["repairs"] = repairs
    return conv


def from_openai(rec: dict[str, Any]) -> Conversation:
    return _turns(rec, "messages", "role", "content", OPENAI_ROLES, _openai_content)


def from_prompt_completion(rec: dict[str, Any]) -> Conversation:
    prompt = _get(rec, "prompt")
    completion = _get(rec, "completion")
    if completion.endswith(EOS_MARKER):
        completion = completion[: -len(EOS_MARKER)]
    return _validated(Conversation.from_pairs(prompt, completion), ["prompt", "completion"])


FORMATS: dict[str, Callable[[dict[str, Any]], Conversation]] = {
    "alpaca": from_alpaca,
    "sharegpt": from_sharegpt,
    "openai": from_openai,
    "prompt_completion": from_prompt_completion,
}

#: key that identifies a format, checked in this order
_SIGNATURES = (("conversations", "sharegpt"), ("messages", "openai"), ("instruction", "alpaca"),
               ("completion", "prompt_completion"))


def detect_record_format(rec: Any) -> str:
    if isinstance(rec, dict):
        for key, fmt in _SIGNATURES:
            if key in rec:
                return fmt
        keys = ", ".join(sorted(map(str, rec))[:8])
    else:
        keys = f"a {type(rec).__name__}, not an object"
    raise DataError(f"cannot detect the record format from keys ({keys}); expected one of: conversations "
                    "(sharegpt), messages (openai), instruction/output (alpaca), prompt/completion; "
                    "or pass format=", reason="unknown_format")


#: source fields each converter reads (a converter that starts reading a field adds it here); anything
#: else is counted in the report as a field that is not read, so nothing is dropped without notice
KNOWN_FIELDS: dict[str, set[str]] = {
    "alpaca": {"instruction", "input", "output", "system", "history", "id"},
    "sharegpt": {"conversations", "system", "id", "tools"},
    # meta: the task system's provenance (task, template, cluster) in mixture.jsonl; Muppet reads the task
    "openai": {"messages", "id", "tools", "meta"},
    "prompt_completion": {"prompt", "completion", "id"},
}
#: per-turn fields read, for formats whose turns are objects
KNOWN_TURN_FIELDS: dict[str, tuple[str, set[str]]] = {
    "sharegpt": ("conversations", {"from", "value", "name"}),
    "openai": ("messages", {"role", "content", "name", "tool_calls", "tool_call_id"}),
}


def unknown_fields(rec: dict[str, Any], fmt: str) -> list[str]:
    """Fields of ``rec`` that the ``fmt`` converter does not read (``key`` or ``turns[].key``)."""
    known = KNOWN_FIELDS.get(fmt)
    out = {k for k in rec if k not in known} if known is not None else set()
    key, turn_known = KNOWN_TURN_FIELDS.get(fmt, (None, None))
    if key and isinstance(rec.get(key), list):
        out.update(f"{key}[].{k}" for t in rec[key] if isinstance(t, dict) for k in t if k not in turn_known)
    return sorted(out)


def convert(rec: Any, fmt: str, **options: Any) -> Conversation:
    """``options`` go to converters that take them (``repair_leading_assistant`` for ShareGPT)."""
    if not isinstance(rec, dict):
        raise DataError(f"record must be a JSON object, got {type(rec).__name__}", reason="wrong_type")
    fn = FORMATS[fmt]
    conv = fn(rec, **options) if options and fmt == "sharegpt" else fn(rec)
    extra = unknown_fields(rec, fmt)
    if extra:
        conv.meta["unknown_fields"] = extra
    return conv
