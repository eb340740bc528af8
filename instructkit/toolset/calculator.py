"""A calculator that is safe on hostile input: an AST whitelist with limits, never ``eval``.

Only numbers, ``+ - * / // % **``, unary signs, parentheses, a few math functions (``sqrt``,
``abs``, ``round``, ``min``, ``max``, ``floor``, ``ceil``, ``log``, ``exp``) and the constants
``pi``/``e`` pass. Every other node (names, attribute access, subscripts, lambdas, comprehensions,
strings, calls of anything else) is rejected before anything runs. Limits bound the work: the
expression's length (``ast.parse`` of a 1 MB or deeply nested expression is itself costly), the
nesting depth, the exponent, ``round``'s ndigits and the size of any intermediate integer (``9**9**9``
would otherwise run for hours), plus a wall-clock deadline checked at every node. The toolset also runs
the calculator in a worker process with a CPU-time limit (``sandbox.py``): a bound missed here still
stops only that call. Errors are returned as
``CalculatorError`` with a one-line reason, which the toolset hands back to the model as the result.
"""

from __future__ import annotations

import ast
import math
import operator
import re
import time
from typing import Any, Callable

MAX_CHARS = 500          # GSM8K annotations are < 60 chars; a long input is not arithmetic
MAX_DEPTH = 50           # nesting depth of the parsed expression
MAX_EXPONENT = 10_000
MAX_INT_BITS = 4_096     # ~1,233 decimal digits
MAX_NDIGITS = 1_000      # round(x, -n) builds 10**n in C, holding the GIL: round(1, -10**8) ran for minutes
TIME_LIMIT_S = 0.5


_CALL = re.compile(r"[A-Za-z_]\s*\(")
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")


class CalculatorError(ValueError):
    """A rejected or failed expression (the message is what the model sees)."""


_BIN: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow,
}
_UNARY: dict[type, Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg}
_FUNCS: dict[str, Callable[..., Any]] = {
    "sqrt": math.sqrt, "abs": abs, "round": round, "min": min, "max": max, "floor": math.floor,
    "ceil": math.ceil, "log": math.log, "exp": math.exp,
}
_CONSTS = {"pi": math.pi, "e": math.e}


def _check_size(x: Any) -> Any:
    if isinstance(x, int) and x.bit_length() > MAX_INT_BITS:
        raise CalculatorError(f"result too large (over {MAX_INT_BITS} bits)")
    if isinstance(x, float) and math.isnan(x):
        raise CalculatorError("result is not a number")
    return x


def _pow(a: Any, b: Any) -> Any:
    if abs(b) > MAX_EXPONENT:
        raise CalculatorError(f"exponent too large (|exponent| > {MAX_EXPONENT})")
    if isinstance(a, int) and isinstance(b, int) and b > 0 and a not in (0, 1, -1):
        # the result has about b*log2|a| bits: refuse before computing it
        if b * math.log2(abs(a)) > MAX_INT_BITS:
            raise CalculatorError(f"result too large (over {MAX_INT_BITS} bits)")
    return a ** b


class _Evaluator:
    def __init__(self, deadline: float):
        self.deadline = deadline

    def ev(self, node: ast.AST, depth: int = 0) -> Any:
        if depth > MAX_DEPTH:
            raise CalculatorError(f"expression nested too deeply (> {MAX_DEPTH})")
        if time.monotonic() > self.deadline:
            raise CalculatorError(f"time limit exceeded ({TIME_LIMIT_S}s)")
        if isinstance(node, ast.Expression):
            return self.ev(node.body, depth + 1)
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return _check_size(node.value)
        if isinstance(node, ast.BinOp) and type(node.op) in _BIN:
            a, b = self.ev(node.left, depth + 1), self.ev(node.right, depth + 1)
            if isinstance(node.op, ast.Pow):
                return _check_size(_pow(a, b))
            return _check_size(_BIN[type(node.op)](a, b))
        if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
            return _UNARY[type(node.op)](self.ev(node.operand, depth + 1))
        if isinstance(node, ast.Name) and node.id in _CONSTS:
            return _CONSTS[node.id]
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCS
                and not node.keywords and len(node.args) <= 8):
            args = [self.ev(a, depth + 1) for a in node.args]
            if node.func.id == "round" and len(args) == 2 and isinstance(args[1], int) and abs(args[1]) > MAX_NDIGITS:
                raise CalculatorError(f"round: ndigits out of range (|ndigits| > {MAX_NDIGITS})")
            return _check_size(_FUNCS[node.func.id](*args))
        raise CalculatorError(f"not allowed in a calculator expression: {type(node).__name__}"
                              + (f" {node.id!r}" if isinstance(node, ast.Name) else ""))


def format_number(x: Any) -> str:
    """``24.0`` -> ``24``; floats to at most 10 decimals, trailing zeros dropped."""
    if isinstance(x, bool):
        x = int(x)
    if isinstance(x, int):
        return str(x)
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x.is_integer() and abs(x) < 1e16:
        return str(int(x))
    if 1e-6 <= abs(x) < 1e16:
        return f"{x:.10f}".rstrip("0").rstrip(".")
    return repr(x)


def calculate(expression: str) -> str:
    """Evaluate an arithmetic expression; raise :class:`CalculatorError` on anything else."""
    if not isinstance(expression, str):
        raise CalculatorError(f"expression must be a string, got {type(expression).__name__}")
    if len(expression) > MAX_CHARS:
        raise CalculatorError(f"expression too long ({len(expression)} > {MAX_CHARS} characters)")
    # tolerate the notation models write: thousands separators, x for times, a trailing '='
    expr = expression.replace("×", "*").replace("÷", "/").strip().rstrip("=").strip()
    if not _CALL.search(expr):  # 1,200 is a thousands separator unless it separates function arguments
        expr = _THOUSANDS.sub("", expr)
    if not expr:
        raise CalculatorError("empty expression")
    try:
        tree = ast.parse(expr, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
        raise CalculatorError(f"not an arithmetic expression ({type(e).__name__})") from None
    try:
        return format_number(_Evaluator(time.monotonic() + TIME_LIMIT_S).ev(tree))
    except CalculatorError:
        raise
    except (ZeroDivisionError, OverflowError, ValueError, TypeError, RecursionError) as e:
        raise CalculatorError(f"{type(e).__name__}: {e}") from None


CALCULATOR_SCHEMA = {
    "type": "function",
    "function": {
        "name": "calculator",
        "description": "Evaluate an arithmetic expression (+ - * / // % **, parentheses, sqrt, round, ...).",
        "parameters": {"type": "object",
                       "properties": {"expression": {"type": "string", "description": "e.g. 48/2 or (3+4)*2"}},
                       "required": ["expression"]},
    },
}
