"""Issue #24 item 2: a tool call cannot freeze the server.

``round(1, -10**8)`` (18 characters) makes CPython build 10**(10**8) in C while holding the GIL. The
calculator bounds every argument that drives cost, and the toolset runs tool calls in a worker process
with a CPU-time limit, so even a cost the bounds miss (a plug-in doing the same in C) stops only that
call: the server answers ``/health`` within 200 ms throughout.
"""

from __future__ import annotations

import gc
import json
import subprocess
import sys
import textwrap
import threading
import time

import httpx
import pytest

from serve_fault_helpers import ScriptedEngine, headers, root, start_server

ATTACKS = ["round(1, -10**8)", "round(1, 10**8)", "round(7, -10**7)", "9**9**9", "2**(2**40)", "(10**1000)**1000",
           "-" * 400 + "1", "1" + "*1" * 240, "round(1,-99999999999999999999)", "max(" + ",".join(["9**999"] * 8) + ")"]


def test_calculator_bounds_cost_driving_arguments():
    # in a child process: before the fix these ran for minutes in C (a hang must fail, not block the suite)
    code = textwrap.dedent(f"""
        import json, time
        from instructkit.toolset.calculator import CalculatorError, calculate
        out = []
        for a in {ATTACKS!r}:
            t0 = time.perf_counter()
            try:
                r = calculate(a)
            except CalculatorError as e:
                r = "error: " + str(e)
            out.append((a, r[:80], time.perf_counter() - t0))
        print(json.dumps(out))""")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert p.returncode == 0, p.stderr[-2000:]
    for expr, res, secs in json.loads(p.stdout):
        assert secs < 0.5, (expr, secs)
    res = {a: r for a, r, _ in json.loads(p.stdout)}
    assert all("ndigits" in res[a] for a in ATTACKS if a.startswith("round")), res
    assert all(res[a].startswith("error:") for a in ATTACKS[:-1]), res


HOSTILE = '''
def burn(n: int = 100000000) -> str:
    """Hostile plug-in: a C-level computation holding the GIL for minutes."""
    return str(round(1, -n))[:10]
'''


def _call(name, args):
    return f'<tool_call>\n{json.dumps({"name": name, "arguments": args})}\n</tool_call>'


@pytest.mark.timeout(300)
def test_health_answers_within_200ms_while_tool_attacks_run(tiny_tokenizer, tmp_path, monkeypatch):
    from instructkit.serve.tools import ServerTools
    from instructkit.toolset.registry import load_toolset

    (tmp_path / "hostile_tools.py").write_text(HOSTILE)
    monkeypatch.syspath_prepend(str(tmp_path))
    ts = load_toolset("calculator,hostile_tools:burn")
    ts.tools["burn"].cpu_s, ts.tools["burn"].timeout_s = 1.0, 20.0
    turn = "\n".join(_call("calculator", {"expression": a}) for a in ATTACKS[:3]) + "\n" + _call("burn", {"n": 10**8})
    eng = ScriptedEngine(tiny_tokenizer, [(turn, "stop"), ("the answer", "stop")])
    srv = start_server(eng, tiny_tokenizer, chat_template="chatml_tools",
                       server_tools=ServerTools(ts, max_calls=8))
    try:
        done: dict = {}

        def attack():
            done["r"] = httpx.post(f"{srv.url}/chat/completions", headers=headers(), timeout=120,
                                   json={"model": "tiny", "messages": [{"role": "user", "content": "go"}]})
        probe = httpx.Client(timeout=30)  # one connection: the probe measures the server, not TLS setup
        probe.get(f"{root(srv)}/health")
        # the server shares this process with the whole test session's heap: a full GC of it pauses every
        # thread ~0.5 s, which is not what this test measures (`instructkit serve` freezes its startup heap)
        gc.collect()
        gc.freeze()
        t = threading.Thread(target=attack)
        t.start()
        lat = []
        while t.is_alive():
            t0 = time.perf_counter()
            h = probe.get(f"{root(srv)}/health")
            lat.append(time.perf_counter() - t0)
            assert h.status_code == 200
            time.sleep(0.05)
        t.join()
        gc.unfreeze()
        r = done["r"]
        assert r.status_code == 200, r.text
        trace = r.json()["choices"][0]["message"]["tool_trace"]
        assert [x["name"] for x in trace] == ["calculator"] * 3 + ["burn"]
        assert all(x["result"].startswith("error:") for x in trace), trace
        assert "CPU-time limit" in trace[-1]["result"]
        print("health latency max %.3f s over %d probes" % (max(lat), len(lat)))
        assert len(lat) >= 20 and max(lat) < 0.2, sorted(lat)[-5:]
    finally:
        srv.close()
