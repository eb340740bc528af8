"""The calculator on hostile input: every item is an error result, quickly; nothing runs, nothing hangs."""

from __future__ import annotations

import time

import pytest

from instructkit.chat.conversation import ToolCall
from instructkit.toolset.calculator import CalculatorError, calculate
from instructkit.toolset.registry import load_toolset

HOSTILE = [
    "9**9**9", "2**100000", "10**5000", "(10**1000)**10", "-(2**5000)", "2**4095*2**4095*2**4095",
    "(1).__class__", "().__class__.__bases__[0].__subclasses__()", "__import__('os').system('echo hi')",
    "import os", "open('/etc/passwd').read()", "exec('1')", "eval('1+1')", "globals()", "x", "lambda: 1",
    "[1]*10**9", "'a'*10**9", "[i for i in range(10**9)]", "{1: 2}", "1 if 1 else 0", "(1).real", "f'{1}'",
    "1+" * 500_000 + "1",                  # a 1 MB expression
    "(1+" * 200 + "1" + ")" * 200,         # nesting deeper than the limit
    "-" * 5000 + "1",                      # a deep unary chain
    "1/0", "5 % 0", "10.0**5000", "sqrt(-1)", "log(0)", "", "   ", "1 +", "print(1)", "max(*[1,2])",
    "round(1, ndigits=2)", None, 12, {"expression": "1"},
]


@pytest.mark.parametrize("expr", HOSTILE, ids=lambda e: repr(e)[:40])
def test_hostile_input_is_an_error_not_a_crash(expr):
    t0 = time.perf_counter()
    with pytest.raises(CalculatorError):
        calculate(expr)
    assert time.perf_counter() - t0 < 1.0


@pytest.mark.parametrize("expr,want", [
    ("48/2", "24"), ("48+24", "72"), ("2**10", "1024"), ("10/3", "3.3333333333"), ("1,200*3", "3600"),
    ("(3+4)*2", "14"), ("7//2", "3"), ("-5+2", "-3"), ("sqrt(16)", "4"), ("max(1, 2)", "2"), ("0.1+0.2", "0.3"),
    ("2**4000 // 2**3999", "2"), ("round(10/3, 2)", "3.33"), ("12.5*4=", "50"), ("3×4", "12"),
])
def test_arithmetic(expr, want):
    assert calculate(expr) == want


def test_errors_come_back_as_tool_results():
    ts = load_toolset("calculator")
    ok = ts.run(ToolCall("calculator", {"expression": "6*7"}))
    assert ok.ok and ok.content == "42"
    for call in (ToolCall("calculator", {"expression": "__import__('os')"}), ToolCall("calculator", {}),
                 ToolCall("calculator", {"expression": "1+" * 500_000 + "1"}), ToolCall("nope", {}),
                 ToolCall("calculator", {"expression": "1", "extra": 1})):
        r = ts.run(call)
        assert not r.ok and r.content.startswith("error:"), r
    assert ts.run(ToolCall("calculator", "2+3")).content == "5"  # a bare value for a one-argument tool
