"""Contrast twins (Gardner et al. 2020): a row with its deciding slot flipped, the label with it, and
nothing else changed (same names, same verb, same reason, same option order).

A model that answers a pair of twins alike was decided by something other than the slot (a prior over
the options, a position); "both twins right" is the consistency the held-out report prints. A twin
function returns ``None`` for a row that has no twin (an NLI row labelled neutral).
"""

from __future__ import annotations

import re
from typing import Callable, Optional

from instructkit.data.tasks.suite.vocab import Row

_OTHER_GENDER = {"she": "he", "he": "she"}


def _swap_pronoun(row: Row, new: str) -> Row:
    old = row["pronoun"]
    sent, n = re.subn(rf"\bbecause {old}\b", f"because {new}", row["sentence"])
    if n != 1:
        raise ValueError(f"coreference row without exactly one 'because {old}': {row['sentence']!r}")
    return {**row, "sentence": sent, "pronoun": new, "label": 1 - row["label"]}


def coref_gender_twin(row: Row) -> Row:
    """she <-> he: the other name is now the referent."""
    return _swap_pronoun(row, _OTHER_GENDER[row["pronoun"]])


def coref_role_twin(row: Row) -> Row:
    """they <-> he (a singular pronoun becomes "they", "they" becomes "he"): the other role is the referent."""
    return _swap_pronoun(row, "he" if row["pronoun"] == "they" else "they")



def nli_facts_twin(row: Row) -> Optional[Row]:
    """Entailment <-> contradiction: the hypothesis states the premise's value of its relation, or another
    value of the same relation (the next one in the relation's list)."""
    from instructkit.data.tasks.suite.gen_language import NLI_RELATIONS
    if row["label"] == 1:
        return None
    name = row["premise"].split(" ", 1)[0]
    for rel, (phrase, values) in NLI_RELATIONS.items():
        prefix = f"{name} {phrase} "
        if row["hypothesis"].startswith(prefix):
            value = row["hypothesis"][len(prefix):].rstrip(".")
            stated = re.search(rf"{re.escape(phrase)} (\w+)", row["premise"])
            if stated is None:
                return None
            new = values[(values.index(stated.group(1)) + 1) % len(values)] if row["label"] == 0 else stated.group(1)
            if new == value:
                return None
            return {**row, "hypothesis": f"{prefix}{new}.", "label": 2 - row["label"]}
    return None


def nli_numbers_twin(row: Row) -> Optional[Row]:
    """Entailment <-> contradiction: the hypothesis' count becomes the premise's count for that item, or a
    count the premise does not give (the smallest one)."""
    if row["label"] == 1:
        return None
    m = re.match(r"(\w+) bought (\d+) (\w+) and (\d+) (\w+) at the market\.", row["premise"])
    h = re.match(r"(\w+) bought (\d+) (\w+)\.", row["hypothesis"])
    if not m or not h:
        return None
    stated = {m.group(3): int(m.group(2)), m.group(5): int(m.group(4))}
    item = h.group(3)
    if item not in stated:
        return None
    new = (next(c for c in range(2, 30) if c not in stated.values()) if row["label"] == 0 else stated[item])
    return {**row, "hypothesis": f"{h.group(1)} bought {new} {item}.", "label": 2 - row["label"]}


TWINS: dict[str, Callable[[Row], Optional[Row]]] = {
    "coref_gender": coref_gender_twin, "coref_role": coref_role_twin,
    "nli_facts": nli_facts_twin, "nli_numbers": nli_numbers_twin}


def twin(generator: str, row: Row) -> Optional[Row]:
    """The contrast twin of ``row`` of built-in generator ``generator`` (None: no twin)."""
    fn = TWINS.get(generator)
    return fn(row) if fn else None
