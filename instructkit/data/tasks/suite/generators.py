"""Procedural generators of the built-in task suite (offline, deterministic by seed).

Every classification generator draws the label FIRST, uniformly, and then builds the text from
templates whose length does not depend on the label, so majority-class and length baselines stay
at chance (tests/unit/tasks/test_tasks_suite.py checks this). Each generator returns rows
(plain dicts); the task YAML maps fields and renders templates.
"""

from __future__ import annotations

import random
from datetime import date, timedelta
from typing import Callable

NAMES = ["Alice", "Bob", "Carla", "David", "Emma", "Farid", "Grace", "Hugo", "Irene", "Jonas", "Kira",
         "Liam", "Maya", "Noah", "Olga", "Pablo", "Quinn", "Rosa", "Sven", "Tara", "Umar", "Vera"]
FEMALE = {"Alice", "Carla", "Emma", "Grace", "Irene", "Kira", "Maya", "Olga", "Rosa", "Tara", "Vera"}
CITIES = ["Paris", "Lima", "Oslo", "Cairo", "Tokyo", "Quito", "Dakar", "Perth", "Seoul", "Turin", "Porto", "Minsk"]
JOBS = ["baker", "nurse", "pilot", "judge", "farmer", "tailor", "chemist", "plumber", "teacher", "painter"]
PETS = ["cat", "dog", "parrot", "rabbit", "turtle", "hamster", "goldfish", "lizard"]
COLORS = ["red", "blue", "green", "yellow", "purple", "orange", "black", "white"]
ITEMS = ["apples", "pencils", "stamps", "marbles", "cookies", "books", "shells", "coins", "stickers"]
WORDS = ["river", "candle", "garden", "pepper", "window", "mirror", "basket", "ladder", "violin", "planet",
         "button", "jacket", "meadow", "anchor", "saddle", "pillow", "dragon", "harbor", "lantern", "copper"]
POS = ["wonderful", "delicious", "friendly", "excellent", "charming", "superb", "delightful", "pleasant"]
NEG = ["dreadful", "tasteless", "unfriendly", "terrible", "annoying", "awful", "disgusting", "unpleasant"]
Row = dict
Gen = Callable[[random.Random], Row]


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
    s, v = _balanced(rng, lambda: _bexpr(rng, 2), want)
    return {"expression": s, "label": int(v)}


def bool_vars(rng: random.Random) -> Row:
    want = rng.random() < 0.5

    def make():
        vals = {x: rng.random() < 0.5 for x in "pqr"}
        a, b, c = rng.sample("pqr", 3)
        op1, op2 = rng.choice(["and", "or"]), rng.choice(["and", "or"])
        neg = rng.choice(["", "not "])
        expr = f"({a} {op1} {neg}{b}) {op2} {c}"
        v = eval(expr, {}, dict(vals))  # noqa: S307 - our own generated expression over p, q, r
        facts = ", ".join(f"{k} is {vals[k]}" for k in "pqr")
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
    i, n = rng.randrange(7), rng.randint(1, 30)
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


# -- entity-attribute QA over generated facts ----------------------------------------------------
def _people(rng: random.Random, k: int) -> list[dict]:
    return [{"name": n, "city": rng.choice(CITIES), "job": rng.choice(JOBS), "pet": rng.choice(PETS)}
            for n in rng.sample(NAMES, k)]


def _facts(ps: list[dict]) -> str:
    return " ".join(f"{p['name']} lives in {p['city']}, works as a {p['job']} and owns a {p['pet']}." for p in ps)


def entity_city(rng: random.Random) -> Row:
    ps = _people(rng, 3)
    p = rng.choice(ps)
    return {"context": _facts(ps), "question": f"Where does {p['name']} live?", "answer": p["city"]}


def entity_job(rng: random.Random) -> Row:
    ps = _people(rng, 3)
    p = rng.choice(ps)
    return {"context": _facts(ps), "question": f"What is {p['name']}'s job?", "answer": p["job"]}


# -- NLI over generated statements (entailment / neutral / contradiction) ----------------------
def nli_facts(rng: random.Random) -> Row:
    ps = _people(rng, 2)
    label = rng.randrange(3)
    p, other = ps[0], rng.choice([c for c in CITIES if c != ps[0]["city"]])
    hyp = [f"{p['name']} lives in {p['city']}.", f"{p['name']} works in {other}.",
           f"{p['name']} lives in {other}."][label]
    # its own phrasing of the facts: held-out NLI premises share no 13-gram with the entity_qa contexts
    premise = " ".join(f"{x['name']} is a {x['job']} who lives in {x['city']} and has a pet {x['pet']}." for x in ps)
    return {"premise": premise, "hypothesis": hyp, "label": label}


def nli_numbers(rng: random.Random) -> Row:
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    a = rng.randint(5, 50)
    label = rng.randrange(3)
    b = rng.randint(1, a - 1)
    hyp = [f"{name} has more than {b} {item}.", f"{name} won more than {b} {item}.",
           f"{name} has less than {b} {item}."][label]
    return {"premise": f"{name} has exactly {a} {item} in a drawer.", "hypothesis": hyp, "label": label}


# -- sentiment of generated reviews --------------------------------------------------------------
def _review(rng: random.Random, thing: str, parts: list[str], label: int) -> str:
    # mixed reviews: the majority of adjectives carries the label, so no single word decides it
    k = rng.choice([3, 5])
    n_major = rng.randint(k // 2 + 1, k)
    adjs = rng.sample(POS if label else NEG, n_major) + rng.sample(NEG if label else POS, k - n_major)
    rng.shuffle(adjs)
    return " ".join(f"The {rng.choice(parts)} was {a}." for a in adjs) + f" That was my visit to the {thing}."


def sentiment_restaurant(rng: random.Random) -> Row:
    label = rng.randrange(2)
    return {"text": _review(rng, "restaurant", ["soup", "waiter", "dessert", "pasta", "room", "wine"], label),
            "label": label}


def sentiment_movie(rng: random.Random) -> Row:
    label = rng.randrange(2)
    return {"text": _review(rng, "cinema", ["plot", "actor", "ending", "music", "script", "camera work"], label),
            "label": label}


# -- topic classification ------------------------------------------------------------------------
# every topic has one word of each length 5..10: text length carries no information about the topic
TOPICS = {"sports": ["coach", "league", "striker", "football", "champions", "tournament"],
          "science": ["laser", "genome", "neutron", "molecule", "telescope", "laboratory"],
          "business": ["stock", "merger", "revenue", "investor", "franchise", "accountant"],
          "cooking": ["flour", "garlic", "noodles", "saucepan", "casserole", "vegetables"]}


def _topic_text(rng: random.Random, label: int) -> str:
    topic = list(TOPICS)[label]
    w = rng.sample(TOPICS[topic], 3)
    return f"{rng.choice(NAMES)} talked about the {w[0]} and the {w[1]} near the {w[2]} in {rng.choice(CITIES)}."


def topic_news(rng: random.Random) -> Row:
    label = rng.randrange(4)
    return {"text": _topic_text(rng, label), "label": label}


def topic_headline(rng: random.Random) -> Row:
    label = rng.randrange(4)
    w = rng.sample(TOPICS[list(TOPICS)[label]], 2)
    return {"text": f"{rng.choice(CITIES)}: new {w[0]} surprises {w[1]} fans", "label": label}


# -- paraphrase detection --------------------------------------------------------------------------
def paraphrase_facts(rng: random.Random) -> Row:
    p = _people(rng, 1)[0]
    label = rng.randrange(2)
    s1 = f"{p['name']} lives in {p['city']} and works as a {p['job']}."
    city = p["city"] if label else rng.choice([c for c in CITIES if c != p["city"]])
    s2 = f"{p['name']}, a {p['job']}, has a home in {city}."
    return {"sentence1": s1, "sentence2": s2, "label": label}


def paraphrase_events(rng: random.Random) -> Row:
    a, b = rng.sample(NAMES, 2)
    item = rng.choice(ITEMS)
    label = rng.randrange(2)
    s1 = f"{a} gave {b} some {item}."
    s2 = f"{b} received some {item} from {a}." if label else f"{a} received some {item} from {b}."
    return {"sentence1": s1, "sentence2": s2, "label": label}


# -- summarisation of generated records ------------------------------------------------------------
def summarize_person(rng: random.Random) -> Row:
    p = _people(rng, 1)[0]
    age = rng.randint(20, 80)
    color = rng.choice(COLORS)
    rec = (f"name: {p['name']}; age: {age}; city: {p['city']}; occupation: {p['job']}; pet: {p['pet']}; "
           f"favourite colour: {color}")
    return {"record": rec, "summary": f"{p['name']} is a {age}-year-old {p['job']} from {p['city']} who owns a {p['pet']}."}


def summarize_match(rng: random.Random) -> Row:
    a, b = rng.sample(CITIES, 2)
    x, y = rng.randint(0, 5), rng.randint(0, 5)
    rec = f"home: {a}; away: {b}; home goals: {x}; away goals: {y}; attendance: {rng.randint(1000, 90000)}"
    res = "drew with" if x == y else ("beat" if x > y else "lost to")
    return {"record": rec, "summary": f"{a} {res} {b} {x}-{y}."}


# -- coreference in templated sentences ------------------------------------------------------------
def coref_gender(rng: random.Random) -> Row:
    f = rng.choice(sorted(FEMALE))
    m = rng.choice([n for n in NAMES if n not in FEMALE])
    pron_f = rng.random() < 0.5
    first, second = (f, m) if rng.random() < 0.5 else (m, f)
    verb = rng.choice(["thanked", "called", "visited", "helped", "met"])
    pron = "she" if pron_f else "he"
    sent = f"{first} {verb} {second} because {pron} had some free time."
    options = [first, second]
    return {"sentence": sent, "pronoun": pron, "options": options, "label": options.index(f if pron_f else m)}


def coref_role(rng: random.Random) -> Row:
    a, b = rng.sample(NAMES, 2)
    label = rng.randrange(2)
    # the verb decides who the pronoun refers to (the giver or the receiver), not the name order
    # reasons come in pairs of equal length so that sentence length says nothing about the label
    pair = rng.choice([("owed money", "sold a car"), ("were in debt", "did the work"),
                       ("had lost a bet", "had fixed a TV")])
    pron = "they"
    sent = f"{a} paid {b} because {pron} {pair[label]}."
    return {"sentence": sent, "pronoun": pron, "options": [a, b], "label": label}


GENERATORS: dict[str, Gen] = {f.__name__: f for f in [
    add_sub, multiply, bool_expr, bool_vars, date_add, weekday, sort_numbers, sort_words, reverse_words,
    first_letters, entity_city, entity_job, nli_facts, nli_numbers, sentiment_restaurant, sentiment_movie,
    topic_news, topic_headline, paraphrase_facts, paraphrase_events, summarize_person, summarize_match,
    coref_gender, coref_role]}


def generate(name: str, n: int, seed: int) -> list[Row]:
    """``n`` rows of generator ``name``; the same (name, n, seed) always gives the same rows."""
    rng = random.Random(f"{name}:{seed}")
    return [GENERATORS[name](rng) for _ in range(n)]
