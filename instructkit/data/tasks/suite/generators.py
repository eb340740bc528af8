"""Procedural generators of the built-in task suite (offline, deterministic by seed).

Every classification generator draws the label FIRST, uniformly, and then builds the text from
templates whose length does not depend on the label, so majority-class and length baselines stay
at chance (tests/unit/tasks/test_tasks_suite.py checks this). Each generator returns rows
(plain dicts); the task YAML maps fields and renders templates. :func:`generate` keeps only rows that
the asked split owns (a hash partition of the row space) and distinct ones, so train and evaluation
splits never share a row (tests/unit/tasks/test_suite_splits.py). Generators whose deciding slot
can be flipped (the pronoun of a coreference row, the value a hypothesis states) have a contrast twin
(:mod:`.twins`): the same row with that slot flipped and the label with it, nothing else changed.
"""

from __future__ import annotations

import hashlib
import random

from instructkit.data.tasks.suite.gen_language import (coref_gender, coref_role, entity_city, entity_job,  # noqa: F401
                                                       nli_facts, nli_numbers, paraphrase_events, paraphrase_facts,
                                                       sentiment_movie, sentiment_restaurant, summarize_match,
                                                       summarize_person, topic_headline, topic_news)
from instructkit.data.tasks.suite.gen_reasoning import (add_sub, bool_expr, bool_vars, date_add,  # noqa: F401
                                                        first_letters, multiply, reverse_words, sort_numbers,
                                                        sort_initials, sort_words, times_word, weekday)
from instructkit.data.tasks.suite.twins import TWINS, twin  # noqa: F401
from instructkit.data.tasks.suite.vocab import *  # noqa: F401,F403  (the word lists, re-exported)
from instructkit.data.tasks.suite.vocab import Gen, Row
from instructkit.errors import DataError

GENERATORS: dict[str, Gen] = {f.__name__: f for f in [
    add_sub, multiply, bool_expr, bool_vars, date_add, weekday, sort_numbers, sort_words, reverse_words,
    first_letters, entity_city, entity_job, nli_facts, nli_numbers, sentiment_restaurant, sentiment_movie,
    topic_news, topic_headline, paraphrase_facts, paraphrase_events, summarize_person, summarize_match,
    coref_gender, coref_role, sort_initials, times_word]}


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
