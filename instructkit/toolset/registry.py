"""Tools and the toolset: the plug-in point for a user's own functions.

A :class:`Tool` is a Python callable plus its OpenAI-style JSON schema. The toolset runs a
:class:`~instructkit.chat.ToolCall` and always returns a :class:`ToolResult`: an unknown tool, bad
arguments, an exception or a timeout become an ``error: ...`` result the model reads, never a crash
of the loop. A tool loaded by spec (every built-in and plug-in) runs in a worker process with a CPU-time
limit (:mod:`.sandbox`): a hostile argument can stop that call, never the process that asked for it.
A :class:`Tool` built from a Python object here (``Tool.from_function``) runs in a thread. Built-in tools are named in :data:`BUILTINS`; a user's own is given as
``module.path:function`` (its schema from the function's ``TOOL_SCHEMA`` attribute, or one inferred
from its signature and docstring), e.g. ``instructkit chat MODEL --tools calculator,mypkg.tools:weather``.
"""

from __future__ import annotations

import concurrent.futures as cf
import importlib
import inspect
import json
from dataclasses import dataclass, field
from typing import Any, Callable

from instructkit.chat.conversation import ToolCall
from instructkit.errors import InstructkitError

MAX_RESULT_CHARS = 4000  # a tool's answer goes back into the context window: cap it


@dataclass
class ToolResult:
    content: str
    ok: bool = True
    call: ToolCall | None = None


@dataclass
class Tool:
    name: str
    fn: Callable[..., Any]
    schema: dict[str, Any]
    #: seconds before a call is answered with a timeout error (a worker process is killed then)
    timeout_s: float = 10.0
    #: how it is loaded again in a worker process (``load_tool(spec, **options)``); None: run in a thread
    spec: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    #: CPU seconds one call may use in its worker process
    cpu_s: float = 5.0

    @classmethod
    def from_function(cls, fn: Callable[..., Any], schema: dict[str, Any] | None = None,
                      name: str | None = None, timeout_s: float = 10.0) -> "Tool":
        """Wrap a plain function; without ``schema`` one is built from the signature (str/int/float/bool)."""
        schema = schema or getattr(fn, "TOOL_SCHEMA", None) or _schema_from_signature(fn, name)
        return cls(name or schema["function"]["name"], fn, schema, timeout_s)

    @property
    def parameters(self) -> dict[str, Any]:
        return self.schema.get("function", {}).get("parameters", {}) or {}


_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean", list: "array", dict: "object"}


def _schema_from_signature(fn: Callable[..., Any], name: str | None) -> dict[str, Any]:
    props, required = {}, []
    for p in inspect.signature(fn).parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        props[p.name] = {"type": _JSON_TYPES.get(p.annotation, "string")}
        if p.default is p.empty:
            required.append(p.name)
    doc = (inspect.getdoc(fn) or "").split("\n\n")[0]
    return {"type": "function", "function": {"name": name or fn.__name__, "description": doc,
                                             "parameters": {"type": "object", "properties": props,
                                                            "required": required}}}


@dataclass
class Toolset:
    tools: dict[str, Tool] = field(default_factory=dict)
    #: run tools that have a spec in worker processes (off: in a thread of this process, not killable)
    isolate: bool = True

    def add(self, tool: Tool) -> "Toolset":
        self.tools[tool.name] = tool
        return self

    @property
    def schemas(self) -> list[dict[str, Any]]:
        return [t.schema for t in self.tools.values()]

    def __contains__(self, name: str) -> bool:
        return name in self.tools

    def run(self, call: ToolCall) -> ToolResult:
        tool = self.tools.get(call.name)
        if tool is None:
            return ToolResult(f"error: unknown tool {call.name!r} (available: {', '.join(self.tools) or 'none'})",
                              False, call)
        args = call.arguments
        if not isinstance(args, dict):  # a bare value for a one-parameter tool: {"expression": "2+2"}
            names = list(tool.parameters.get("properties", {}))
            if len(names) != 1:
                return ToolResult(f"error: arguments for {call.name} must be a JSON object", False, call)
            args = {names[0]: args}
        missing = [k for k in tool.parameters.get("required", []) if k not in args]
        if missing:
            return ToolResult(f"error: {call.name} is missing argument(s) {', '.join(missing)}", False, call)
        if tool.spec is not None and self.isolate:
            from instructkit.toolset.sandbox import shared_sandbox
            ok, content = shared_sandbox().call(tool.spec, tool.options, args, cpu_s=tool.cpu_s,
                                                timeout_s=tool.timeout_s)
            return ToolResult(content.replace("the tool", call.name, 1), ok, call)
        pool = cf.ThreadPoolExecutor(max_workers=1)
        try:
            out = pool.submit(tool.fn, **args).result(timeout=tool.timeout_s)
        except cf.TimeoutError:
            return ToolResult(f"error: {call.name} timed out after {tool.timeout_s}s", False, call)
        except ValueError as e:  # a tool's own "bad input" (e.g. CalculatorError): the message says it all
            return ToolResult(f"error: {e}"[:MAX_RESULT_CHARS], False, call)
        except Exception as e:  # the tool's failure is the model's information, not our crash
            return ToolResult(f"error: {type(e).__name__}: {e}"[:MAX_RESULT_CHARS], False, call)
        finally:
            pool.shutdown(wait=False)
        text = out if isinstance(out, str) else json.dumps(out, ensure_ascii=False, default=str)
        return ToolResult(text[:MAX_RESULT_CHARS], True, call)


def _calculator(**kw: Any) -> Tool:
    from instructkit.toolset.calculator import CALCULATOR_SCHEMA, calculate
    return Tool("calculator", lambda expression: calculate(expression), CALCULATOR_SCHEMA, timeout_s=5.0, cpu_s=2.0)


def _retrieval(index: str | None = None, **kw: Any) -> Tool:
    from instructkit.toolset.retrieval import SEARCH_SCHEMA, search_function
    if not index:
        raise InstructkitError("the search tool needs an index: --tools search --index DIR "
                               "(build one with `instructkit tools index FILES --out DIR`)")
    return Tool("search", search_function(index), SEARCH_SCHEMA, timeout_s=10.0)


#: built-in tools by name; each factory takes the options (e.g. ``index=``) and returns a Tool
BUILTINS: dict[str, Callable[..., Tool]] = {"calculator": _calculator, "search": _retrieval}


def load_tool(spec: str, **options: Any) -> Tool:
    """A built-in name (``calculator``, ``search``) or ``module.path:function`` (a user's plug-in)."""
    tool = _load(spec, **options)
    tool.spec, tool.options = spec, dict(options)
    return tool


def _load(spec: str, **options: Any) -> Tool:
    if spec in BUILTINS:
        return BUILTINS[spec](**options)
    if ":" not in spec:
        raise InstructkitError(f"unknown tool {spec!r}: expected one of {', '.join(BUILTINS)} "
                               "or module.path:function")
    mod, _, attr = spec.partition(":")
    try:
        fn = getattr(importlib.import_module(mod), attr)
    except (ImportError, AttributeError) as e:
        raise InstructkitError(f"tool {spec!r}: cannot import ({e})") from None
    if isinstance(fn, Tool):
        return fn
    if not callable(fn):
        raise InstructkitError(f"tool {spec!r} is not callable")
    return Tool.from_function(fn)


def load_toolset(specs: str | list[str] | None, **options: Any) -> Toolset:
    """``"calculator,search"`` or a list -> a :class:`Toolset` (empty for None/"")."""
    if isinstance(specs, str):
        specs = [s.strip() for s in specs.split(",") if s.strip()]
    ts = Toolset()
    for s in specs or []:
        ts.add(load_tool(s, **options))
    return ts
