"""Procedural generators of the built-in task suite (offline, deterministic by seed).

Every classification generator draws the label FIRST, uniformly, and then builds the text from
templates whose length does not depend on the label, so majority-class and length baselines stay
at chance (tests/unit/tasks/test_tasks_suite.py checks this). Each generator returns rows
(plain dicts); the task YAML maps fields and renders templates. :func:`generate` keeps only rows that
the asked split owns (a hash partition of the row space) and distinct ones, so train and evaluation
splits never share a row (tests/unit/tasks/test_suite_splits.py).
"""

from __future__ import annotations

import hashlib
import random
from datetime import date, timedelta
from typing import Callable

from instructkit.errors import DataError

NAMES = ["Alice", "Bob", "Carla", "David", "Emma", "Farid", "Grace", "Hugo", "Irene", "Jonas", "Kira",
         "Liam", "Maya", "Noah", "Olga", "Pablo", "Quinn", "Rosa", "Sven", "Tara", "Umar", "Vera"]
FEMALE = {"Alice", "Carla", "Emma", "Grace", "Irene", "Kira", "Maya", "Olga", "Rosa", "Tara", "Vera"}
# coreference by gender needs names whose gender is unambiguous to a reader (Quinn is not)
WOMEN = sorted(FEMALE | {"Anna", "Sarah", "Laura", "Julia", "Helen", "Mary", "Sophie", "Linda", "Nora"})
MEN = sorted({"Bob", "David", "Hugo", "Jonas", "Liam", "Noah", "Pablo", "Sven", "Umar", "Peter", "James",
              "Thomas", "Mark", "Paul", "George", "Henry", "Oscar", "Victor", "Frank"})
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
# Learnable by a small model (issue #16: the old NLI oracle stayed at chance): the label follows from
# which words of the hypothesis the premise contains. Entailment restates a stated fact, contradiction
# gives a stated relation another value, neutral uses the relation the premise does not state. All
# three kinds draw from the same relations and values, so the hypothesis' length says nothing.
NLI_RELATIONS = {"city": ("resides in", CITIES), "job": ("is employed as a", JOBS), "pet": ("keeps a pet", PETS)}


def nli_facts(rng: random.Random) -> Row:
    name = rng.choice(NAMES)
    label = rng.randrange(3)
    stated = rng.sample(list(NLI_RELATIONS), 2)
    unstated = next(r for r in NLI_RELATIONS if r not in stated)
    vals = {r: rng.choice(NLI_RELATIONS[r][1]) for r in NLI_RELATIONS}
    # its own phrasing (resides / is employed as): no 13-gram shared with entity_qa or paraphrase rows
    premise = " and ".join(f"{NLI_RELATIONS[r][0]} {vals[r]}" for r in stated)
    rel = rng.choice(stated) if label != 1 else unstated
    value = vals[rel] if label == 0 else rng.choice([v for v in NLI_RELATIONS[rel][1] if v != vals[rel]])
    return {"premise": f"{name} {premise}.", "hypothesis": f"{name} {NLI_RELATIONS[rel][0]} {value}.",
            "label": label}


def nli_numbers(rng: random.Random) -> Row:
    """Counts: "X bought 7 stamps and 12 coins." vs "X bought 7 stamps." / "... 9 stamps." / "... 7 shells."."""
    name = rng.choice(NAMES)
    label = rng.randrange(3)
    items = rng.sample(ITEMS, 3)
    a, b = rng.sample(range(2, 30), 2)
    premise = f"{name} bought {a} {items[0]} and {b} {items[1]} at the market."
    k = rng.randrange(2)
    count, item = (a, items[0]) if k == 0 else (b, items[1])
    if label == 2:  # contradiction: a stated item with a count the premise does not give
        count = rng.choice([c for c in range(2, 30) if c not in (a, b)])
    elif label == 1:  # neutral: an item the premise does not mention
        item = items[2]
    return {"premise": premise, "hypothesis": f"{name} bought {count} {item}.", "label": label}


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
    verb = rng.choice(["surprises", "worries", "delights"])
    return {"text": f"{rng.choice(CITIES)}: new {w[0]} {verb} {w[1]} fans", "label": label}


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
# Both tasks resolve the pronoun by agreement (gender; number), a cue a small model can acquire; the
# referent's position (first or second) is drawn independently of the label.
COREF_VERBS = ["thanked", "called", "visited", "helped", "met", "phoned", "greeted", "warned", "hugged", "praised"]
COREF_REASONS_SG = ["was in a good mood", "had some free time", "was feeling lonely", "had good news",
                    "was about to leave", "needed some advice"]
COREF_REASONS_PL = ["were in a good mood", "had some free time", "were feeling lonely", "had good news",
                    "were about to leave", "needed some advice"]


def coref_gender(rng: random.Random) -> Row:
    f, m = rng.choice(WOMEN), rng.choice(MEN)
    label = rng.randrange(2)  # index of the referent among the options
    options = [f, m] if rng.random() < 0.5 else [m, f]
    pron = "she" if options[label] == f else "he"
    sent = f"{options[0]} {rng.choice(COREF_VERBS)} {options[1]} because {pron} {rng.choice(COREF_REASONS_SG)}."
    return {"sentence": sent, "pronoun": pron, "options": options, "label": label}


def coref_role(rng: random.Random) -> Row:
    """Number agreement: "The pilot thanked the nurses because they were ..." -> the nurses."""
    one, many = rng.sample(JOBS, 2)
    label = rng.randrange(2)
    options = [f"the {one}", f"the {many}s"] if rng.random() < 0.5 else [f"the {many}s", f"the {one}"]
    plural = options[label].endswith("s")
    pron = "they" if plural else rng.choice(["he", "she"])
    reason = rng.choice(COREF_REASONS_PL if plural else COREF_REASONS_SG)
    sent = f"{options[0].capitalize()} {rng.choice(COREF_VERBS)} {options[1]} because {pron} {reason}."
    return {"sentence": sent, "pronoun": pron, "options": options, "label": label}


GENERATORS: dict[str, Gen] = {f.__name__: f for f in [
    add_sub, multiply, bool_expr, bool_vars, date_add, weekday, sort_numbers, sort_words, reverse_words,
    first_letters, entity_city, entity_job, nli_facts, nli_numbers, sentiment_restaurant, sentiment_movie,
    topic_news, topic_headline, paraphrase_facts, paraphrase_events, summarize_person, summarize_match,
    coref_gender, coref_role]}


#: share of the row space each split owns (by a hash of the row's content): train and evaluation rows
#: are disjoint by construction, whatever the generator's space or the number of rows drawn
SPLIT_BUCKETS = {"train": range(0, 80), "validation": range(80, 95), "test": range(95, 100)}


def split_of(name: str, row: Row) -> str:
    """The split that owns ``row`` of generator ``name`` (a stable hash of its content)."""
    key = name + "|" + repr(sorted((k, str(v)) for k, v in row.items()))
    b = int.from_bytes(hashlib.sha1(key.encode()).digest()[:4], "big") % 100
    return next(s for s, r in SPLIT_BUCKETS.items() if b in r)


def generate(name: str, n: int, seed: int, split: str | None = None) -> list[Row]:
    """``n`` distinct rows of generator ``name``; the same arguments always give the same rows.

    With ``split`` (train / validation / test) only rows that split owns are kept (:func:`split_of`),
    so no row of one split appears in another; a generator whose space cannot give ``n`` distinct
    rows for the split raises :class:`DataError` instead of repeating rows.
    """
    if name not in GENERATORS:
        raise DataError(f"unknown built-in generator {name!r} (known: {', '.join(GENERATORS)})",
                        field="source.builtin", reason="unknown_generator")
    if split is not None and split not in SPLIT_BUCKETS:
        raise DataError(f"built-in generators have splits {', '.join(SPLIT_BUCKETS)}, not {split!r}",
                        field="source", reason="unknown_split")
    rng = random.Random(f"{name}:{seed}:{split}" if split else f"{name}:{seed}")
    out: list[Row] = []
    seen: set[str] = set()
    budget = 50 * n + 5_000
    while len(out) < n and budget > 0:
        budget -= 1
        row = GENERATORS[name](rng)
        key = repr(sorted((k, str(v)) for k, v in row.items()))
        if key in seen or (split is not None and split_of(name, row) != split):
            continue
        seen.add(key)
        out.append(row)
    if len(out) < n:
        raise DataError(f"generator {name!r} gave only {len(out)} distinct {split or ''} rows of the {n} asked "
                        "(its space is too small): ask for fewer", field="source", reason="space_exhausted")
    return out
