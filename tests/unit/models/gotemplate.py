"""A small, independent interpreter of the Go text/template subset Ollama templates use (for tests).

Supports text, ``{{ .Field }}``, ``{{ "string" }}``, ``{{ range .Messages }}``, ``{{ if/else if/else }}``
with ``eq .Field "x"`` / ``ne`` / a bare field, ``{{ end }}`` and the ``{{-``/``-}}`` trim markers, with Go's
semantics for those (trim markers remove all adjacent whitespace). Anything else raises, so a template
using more than this is noticed rather than mis-rendered.
"""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

_ACTION = re.compile(r"{{(-\s)?(.*?)(\s-)?}}", re.S)


def _lex(src: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    for m in _ACTION.finditer(src):
        text = src[pos:m.start()]
        if m.group(1):
            text = text.rstrip()
        if out and out[-1][0] == "trim_next":
            out.pop()
            text = text.lstrip()
        out.append(("text", text))
        out.append(("action", m.group(2).strip()))
        if m.group(3):
            out.append(("trim_next", ""))
        pos = m.end()
    text = src[pos:]
    if out and out[-1][0] == "trim_next":
        out.pop()
        text = text.lstrip()
    out.append(("text", text))
    return out


def _value(expr: str, dot: Any, root: Any) -> Any:
    if expr.startswith('"'):
        return json.loads(expr)
    if expr.startswith("$."):
        return root.get(expr[2:]) if isinstance(root, dict) else None
    if expr.startswith("."):
        return dot.get(expr[1:]) if isinstance(dot, dict) else None
    raise ValueError(f"unsupported operand {expr!r}")


def _cond(expr: str, dot: Any, root: Any) -> bool:
    parts = shlex.split(expr, posix=False)
    if parts[0] in ("eq", "ne") and len(parts) == 3:
        same = _value(parts[1], dot, root) == _value(parts[2], dot, root)
        return same if parts[0] == "eq" else not same
    if len(parts) == 1:
        return bool(_value(parts[0], dot, root))
    raise ValueError(f"unsupported condition {expr!r}")


def _parse(tokens: list[tuple[str, str]], i: int, stop: tuple[str, ...]) -> tuple[list, int, str]:
    nodes: list = []
    while i < len(tokens):
        kind, val = tokens[i]
        if kind == "text":
            nodes.append(("text", val))
            i += 1
            continue
        head = val.split(" ", 1)[0]
        if head in stop or val.startswith("else"):
            return nodes, i, val
        if head == "range":
            body, i, end = _parse(tokens, i + 1, ("end",))
            nodes.append(("range", val[len("range"):].strip(), body))
            i += 1
        elif head == "if":
            branches = []
            cond = val[3:].strip()
            while True:
                body, i, end = _parse(tokens, i + 1, ("end",))
                branches.append((cond, body))
                if end == "end":
                    break
                cond = end[len("else if"):].strip() if end.startswith("else if") else None
            nodes.append(("if", branches))
            i += 1
        else:
            nodes.append(("print", val))
            i += 1
    return nodes, i, ""


def _run(nodes: list, dot: Any, root: Any) -> str:
    out = []
    for n in nodes:
        if n[0] == "text":
            out.append(n[1])
        elif n[0] == "print":
            out.append(str(_value(n[1], dot, root)))
        elif n[0] == "range":
            for item in _value(n[1], dot, root) or []:
                out.append(_run(n[2], item, root))
        elif n[0] == "if":
            for cond, body in n[1]:
                if cond is None or _cond(cond, dot, root):
                    out.append(_run(body, dot, root))
                    break
    return "".join(out)


def render(template: str, data: dict[str, Any]) -> str:
    nodes, _, _ = _parse(_lex(template), 0, ())
    return _run(nodes, data, data)


def parse_modelfile(text: str) -> dict[str, Any]:
    """FROM / TEMPLATE / SYSTEM / PARAMETER stop of a Modelfile (triple-quoted or "quoted" values)."""
    out: dict[str, Any] = {"stop": []}
    for m in re.finditer(r'^(FROM|TEMPLATE|SYSTEM|PARAMETER)\s+(?:(stop)\s+)?("""(.*?)"""|"([^"\n]*)"|(\S+))',
                         text, re.S | re.M):
        value = next(g for g in (m.group(4), m.group(5), m.group(6)) if g is not None)
        if m.group(1) == "PARAMETER":
            out["stop"].append(value)
        else:
            out[m.group(1).lower()] = value
    return out


def ollama_render(modelfile: dict[str, Any], messages: list[dict[str, Any]]) -> str:
    """What Ollama sends the model for a chat: the Modelfile SYSTEM goes first when the chat has none."""
    msgs = list(messages)
    if modelfile.get("system") is not None and not any(m["role"] == "system" for m in msgs):
        msgs = [{"role": "system", "content": modelfile["system"]}] + msgs
    return render(modelfile["template"], {"Messages": [{"Role": m["role"], "Content": m["content"]} for m in msgs],
                                          "System": modelfile.get("system")})
