"""Suite generators with a computed answer: arithmetic, boolean logic, dates, sorting, strings."""

from __future__ import annotations

import random
from datetime import date, timedelta
from typing import Callable

from instructkit.data.tasks.suite.vocab import ITEMS, NAMES, WORDS, Row


def _n(rng: random.Random, lo: int = 2, hi: int = 60) -> int:
    return rng.randint(lo, hi)


# -- arithmetic (rationales) -------------------------------------------------------------------
def add_sub(rng: random.Random) -> Row:
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    a, b, c = _n(rng, 10, 90), _n(rng, 2, 40), _n(rng, 1, 9)
    c = min(c, a + b)
    q = f"{name} has {a} {item}. {name} buys {b} more and then gives away {c}. How many {item} does {name} have now?"
    r = f"{name} starts with {a} {item}. After buying {b} more, {name} has {a} + {b} = {a + b}. After giving away {c}, {name} has {a + b} - {c} = {a + b - c}."
    return {"question": q, "answer": str(a + b - c), "rationale": r}


def multiply(rng: random.Random) -> Row:
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    a, b, e = _n(rng, 2, 12), _n(rng, 2, 12), _n(rng, 1, 20)
    q = f"{name} fills {a} boxes with {b} {item} each and finds {e} loose {item}. How many {item} are there in total?"
    r = f"The boxes hold {a} * {b} = {a * b} {item}. Adding the {e} loose ones gives {a * b} + {e} = {a * b + e}."
    return {"question": q, "answer": str(a * b + e), "rationale": r}


def times_word(rng: random.Random) -> Row:  # one-step products: recipes/rlvr_times.yaml (not a suite task)
    name, item, a, b = rng.choice(NAMES), rng.choice(ITEMS), _n(rng, 2, 12), _n(rng, 2, 12)
    q = f"{name} has {a} bags with {b} {item} in each bag. How many {item} does {name} have?"
    return {"question": q, "answer": str(a * b), "rationale": f"{a} * {b} = {a * b}."}


# -- boolean logic -------------------------------------------------------------------------------
def _bexpr(rng: random.Random, depth: int) -> tuple[str, bool]:
    if depth == 0:
        v = rng.random() < 0.5
        return ("True" if v else "False"), v
    op = rng.choice(["and", "or", "not"])
    if op == "not":
        s, v = _bexpr(rng, depth - 1)
        return f"not ({s})", not v
    (s1, v1), (s2, v2) = _bexpr(rng, depth - 1), _bexpr(rng, depth - 1)
    return f"({s1} {op} {s2})", (v1 and v2) if op == "and" else (v1 or v2)


def _balanced(rng: random.Random, make: Callable[[], tuple], want) -> tuple:
    while True:  # rejection sampling to a pre-drawn label: balanced labels, same text distribution
        out = make()
        if out[-1] == want:
            return out


def bool_expr(rng: random.Random) -> Row:
    want = rng.random() < 0.5
    # depths 2 and 3: depth 2 alone has only a few hundred distinct expressions
    s, v = _balanced(rng, lambda: _bexpr(rng, rng.choice([2, 2, 3])), want)
    return {"expression": s, "label": int(v)}


def bool_vars(rng: random.Random) -> Row:
    want = rng.random() < 0.5

    def make():
        vals = {x: rng.random() < 0.5 for x in "pqrs"}
        a, b, c = rng.sample("pqrs", 3)
        op1, op2 = rng.choice(["and", "or"]), rng.choice(["and", "or"])
        neg, neg2 = rng.choice(["", "not "]), rng.choice(["", "not "])
        expr = f"({a} {op1} {neg}{b}) {op2} {neg2}{c}"
        v = eval(expr, {}, dict(vals))  # noqa: S307 - our own generated expression over p, q, r, s
        facts = ", ".join(f"{k} is {vals[k]}" for k in "pqrs")
        return facts, expr, bool(v)
    facts, expr, v = _balanced(rng, make, want)
    return {"expression": f"Given that {facts}, evaluate {expr}.", "label": int(v)}


# -- dates -----------------------------------------------------------------------------------------
def date_add(rng: random.Random) -> Row:
    d = date(2000, 1, 1) + timedelta(days=rng.randint(0, 9000))
    n = rng.randint(1, 40)
    return {"question": f"What is the date {n} days after {d.strftime('%B %d, %Y')}?",
            "answer": (d + timedelta(days=n)).strftime("%B %d, %Y")}


def weekday(rng: random.Random) -> Row:
    days = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
    i, n = rng.randrange(7), rng.randint(1, 400)
    return {"question": f"Today is {days[i]}. What day of the week will it be in {n} days?",
            "answer": days[(i + n) % 7]}


# -- sorting ---------------------------------------------------------------------------------------
def sort_numbers(rng: random.Random) -> Row:
    xs = rng.sample(range(1, 100), rng.randint(4, 7))
    return {"question": " ".join(map(str, xs)), "answer": " ".join(map(str, sorted(xs)))}


def sort_words(rng: random.Random) -> Row:
    xs = rng.sample(WORDS, rng.randint(4, 6))
    return {"question": " ".join(xs), "answer": " ".join(sorted(xs))}


# -- string transformation -----------------------------------------------------------------------
def reverse_words(rng: random.Random) -> Row:
    xs = rng.sample(WORDS, rng.randint(3, 6))
    return {"question": " ".join(xs), "answer": " ".join(reversed(xs))}


def first_letters(rng: random.Random) -> Row:
    xs = rng.sample(WORDS, rng.randint(3, 6))
    return {"question": " ".join(xs), "answer": "".join(w[0] for w in xs)}


def sort_initials(rng: random.Random) -> Row:
    """Composition of two trained skills (sort_words, first_letters): the initials of the words in
    alphabetical order. Scored by exact match; no option list, so no option prior to shift."""
    xs = rng.sample(WORDS, rng.randint(4, 6))
    return {"question": " ".join(xs), "answer": "".join(w[0] for w in sorted(xs))}
