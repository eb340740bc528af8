"""Suite generators over generated text: entity QA, NLI, sentiment, topic, paraphrase, summaries, coreference."""

from __future__ import annotations

import random

from instructkit.data.tasks.suite.vocab import (CITIES, COLORS, ITEMS, JOBS, MEN, NAMES, NEG, PETS, POS, WOMEN,
                                               Row)


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
# Reasons in the simple past with verbs that do not agree in number ("had", not "was/were"): the pronoun
# is the only cue, so a contrast twin (he <-> she, they <-> he) flips the referent and nothing else.
COREF_REASONS = ["had some free time", "had good news", "needed some advice", "felt lonely", "wanted to leave early",
                 "got a new job"]


def coref_gender(rng: random.Random) -> Row:
    f, m = rng.choice(WOMEN), rng.choice(MEN)
    label = rng.randrange(2)  # index of the referent among the options
    options = [f, m] if rng.random() < 0.5 else [m, f]
    pron = "she" if options[label] == f else "he"
    sent = f"{options[0]} {rng.choice(COREF_VERBS)} {options[1]} because {pron} {rng.choice(COREF_REASONS)}."
    return {"sentence": sent, "pronoun": pron, "options": options, "label": label}


def coref_role(rng: random.Random) -> Row:
    """Number agreement: "The pilot thanked the nurses because they had ..." -> the nurses."""
    one, many = rng.sample(JOBS, 2)
    label = rng.randrange(2)
    options = [f"the {one}", f"the {many}s"] if rng.random() < 0.5 else [f"the {many}s", f"the {one}"]
    plural = options[label].endswith("s")
    pron = "they" if plural else rng.choice(["he", "she"])
    reason = rng.choice(COREF_REASONS)
    sent = f"{options[0].capitalize()} {rng.choice(COREF_VERBS)} {options[1]} because {pron} {reason}."
    return {"sentence": sent, "pronoun": pron, "options": options, "label": label}
