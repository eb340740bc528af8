"""Math answers (GSM8K, MATH-style tasks: ``extract: math``, ``compare: math``) by HF's maintained ``math-verify``.

When ``math-verify`` is installed (``pip install 'instructkit[math]'``), a ``math`` task's completion is
parsed by it (``\\boxed{}``, LaTeX fractions, ``$1,234``, ``72.0``, units...) and compared symbolically
with the gold answer; otherwise, and for a completion it finds no answer in, our own extraction
(``answers.extract_number`` / ``compare_numeric``) decides. Results record which one was used
(``answer_spec.verifier``). docs/eval.md measures both on GSM8K outputs and lists their disagreements.

Only tasks that declare ``math`` come here: math-verify also accepts an unevaluated expression as the
answer (a completion cut off at "... so he has 9 * 6" scores 1 for gold 54), which an RL reward on
arithmetic must not pay for (docs/rl.md); ``number``/``numeric`` tasks never call it.

Nothing here imports the rest of instructkit: ``answers`` calls in, with its own fallback.
"""

from __future__ import annotations

import threading
from functools import lru_cache
from typing import Any, Sequence


@lru_cache(maxsize=1)
def verifier() -> str | None:
    """``"math-verify X.Y"`` when the package imports, else None (our extraction is used)."""
    try:
        import math_verify  # noqa: F401
        from importlib.metadata import version
    except ImportError:
        return None
    try:
        return f"math-verify {version('math-verify')}"
    except Exception:  # installed without metadata (vendored): still usable
        return "math-verify"


def _timeout() -> int | None:
    # math-verify times out with SIGALRM, which only the main thread may set
    return 5 if threading.current_thread() is threading.main_thread() else None


def _parse(text: str) -> list[Any]:
    from math_verify import parse
    try:
        return parse(str(text), parsing_timeout=_timeout())
    except Exception:  # malformed LaTeX and the like: treat as "no answer found"
        return []


def extract(text: str) -> str | None:
    """The answer math-verify finds in a completion (its string form, e.g. ``72``, ``\\frac{3}{4}``);
    None when math-verify is missing or finds nothing (then the caller's extraction applies)."""
    if verifier() is None:
        return None
    parsed = _parse(text)
    if not parsed:
        return None
    return _canonical(parsed[0]) or str(parsed[-1]).strip() or None


def _canonical(value: Any) -> str | None:
    """One spelling per number (``990.00`` and ``$990`` -> ``990``, ``0.50`` -> ``0.5``), so that
    self-consistency votes for the same value land together; None for anything that is not a number."""
    try:
        if not getattr(value, "is_Number", False):
            return None
        if value.is_Integer or (value.is_Float and value == int(value)):
            return str(int(value))
        if value.is_Rational:
            return f"{value.p}/{value.q}"
        from decimal import Decimal
        d = Decimal(str(value)).normalize()
        return format(d, "f")
    except (TypeError, ValueError, ArithmeticError):
        return None


def equal(pred: str, targets: Sequence[str]) -> float | None:
    """1.0 / 0.0 as math-verify judges ``pred`` against any target; None when it cannot judge (missing,
    or nothing parsed on either side) so the caller's comparison applies."""
    if verifier() is None:
        return None
    p = _parse(pred)
    if not p:
        return None
    judged = False
    for t in targets:
        g = _parse(t)
        if not g:
            continue
        judged = True
        try:
            from math_verify import verify
            if verify(g, p, timeout_seconds=_timeout()):
                return 1.0
        except Exception:
            continue
    return 0.0 if judged else None
