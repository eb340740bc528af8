"""``instructkit chat MODEL --tools calculator``: the terminal chat with tools run on the client side.

The server parses the model's tool calls into OpenAI ``tool_calls`` (see :mod:`.serve_hook`); this
side runs them with :func:`~instructkit.toolset.loop.execute_calls`, shows each call and result, sends
the results back and repeats until the model answers or ``max_calls`` calls were run. It talks the
plain OpenAI API, so it works against ``--url`` servers that support tools as well.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any, Callable, Iterator, Optional

from instructkit.chat.conversation import Message, ToolCall
from instructkit.errors import InstructkitError
from instructkit.toolset.loop import execute_calls


def post_chat(url: str, key: Optional[str], payload: dict[str, Any]) -> dict[str, Any]:
    import httpx

    headers = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        r = httpx.post(f"{url}/chat/completions", json=payload, headers=headers, timeout=httpx.Timeout(600.0, connect=10.0))
    except httpx.HTTPError as e:
        raise InstructkitError(f"cannot reach {url} ({type(e).__name__}: {e})") from None
    if r.status_code >= 400:
        try:
            msg = r.json()["error"]["message"]
        except Exception:
            msg = r.text[:300]
        raise InstructkitError(f"{url}: HTTP {r.status_code}: {msg}")
    return r.json()


def tool_sender(url: str, key: Optional[str], model: str, toolset: Any, *, max_calls: int = 4,
                max_tokens: int = 512, temperature: float = 0.0,
                note: Callable[[str], None] = print) -> Callable[[list[dict[str, Any]]], Iterator[str]]:
    """A ``send(messages)`` for :func:`instructkit.serve.chat_cli.chat_loop` that runs tool calls."""
    def send(messages: list[dict[str, Any]]) -> Iterator[str]:
        msgs = [dict(m) for m in messages]
        stats: Counter = Counter()
        while True:
            resp = post_chat(url, key, dict(model=model, messages=msgs, tools=toolset.schemas,
                                            max_tokens=max_tokens, temperature=temperature))
            m = resp["choices"][0]["message"]
            calls = [ToolCall.from_dict(c) for c in (m.get("tool_calls") or [])]
            if not calls:
                yield m.get("content") or ""
                return
            if stats["executed"] + len(calls) > max_calls:
                note(f"[stopped: more than {max_calls} tool calls]")
                yield m.get("content") or ""
                return
            results = execute_calls(toolset, calls, stats)
            msgs.append(Message("assistant", m.get("content") or "", tool_calls=calls).to_openai())
            for c, r in zip(calls, results):
                note(f"[{c.name} {json.dumps(c.arguments, ensure_ascii=False)} -> {r.content}]")
                msgs.append(r.to_openai())
    return send
