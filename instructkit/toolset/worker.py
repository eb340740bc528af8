"""The tool worker process: ``python -m instructkit.toolset.worker`` (started by :mod:`.sandbox`).

Reads one JSON request per line on stdin - ``{"spec", "options", "args", "cpu_s", "path"}`` - loads the tool by its
spec (cached), runs it under a CPU-time limit and writes one JSON line ``{"ok", "content"}``. A call that
exceeds the limit gets SIGXCPU and the process dies; the parent answers with an error and starts a new
worker. It exits when stdin closes (the parent is gone).
"""

from __future__ import annotations

import json
import math
import os
import resource
import sys
from typing import Any

MAX_LINE = 16_000   # characters of a result line (results are cut to 4,000 characters anyway)


def _cpu_used() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def _limit_cpu(seconds: float) -> None:
    # only the soft limit moves (an unprivileged process cannot raise a hard limit it lowered); at the
    # soft limit the kernel sends SIGXCPU, whose default action ends the process
    _, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = int(math.ceil(_cpu_used() + seconds))
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def run_one(tools: dict[str, Any], req: dict[str, Any]) -> dict[str, Any]:
    from instructkit.toolset.registry import MAX_RESULT_CHARS, load_tool

    key = json.dumps([req["spec"], req.get("options") or {}], sort_keys=True)
    for p in reversed(req.get("path") or []):
        if p not in sys.path:
            sys.path.insert(0, p)
    try:
        if key not in tools:
            tools[key] = load_tool(req["spec"], **(req.get("options") or {}))
        _limit_cpu(float(req.get("cpu_s") or 10.0))
        out = tools[key].fn(**req["args"])
    except ValueError as e:  # a tool's own "bad input" (e.g. CalculatorError): the message says it all
        return {"ok": False, "content": f"error: {e}"[:MAX_RESULT_CHARS]}
    except Exception as e:  # the tool's failure is the model's information
        return {"ok": False, "content": f"error: {type(e).__name__}: {e}"[:MAX_RESULT_CHARS]}
    text = out if isinstance(out, str) else json.dumps(out, ensure_ascii=False, default=str)
    return {"ok": True, "content": text[:MAX_RESULT_CHARS]}


def main() -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a call stopped by SIGXCPU leaves no core file
    try:
        os.nice(10)  # tool calls yield the CPU to the process they serve (the server's event loop)
    except OSError:
        pass
    tools: dict[str, Any] = {}
    for line in sys.stdin:
        try:
            reply = run_one(tools, json.loads(line))
        except Exception as e:  # a malformed request line: answer, never die
            reply = {"ok": False, "content": f"error: tool worker: {type(e).__name__}: {e}"}
        sys.stdout.write(json.dumps(reply, ensure_ascii=False)[:MAX_LINE] + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
