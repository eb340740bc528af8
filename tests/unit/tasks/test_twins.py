"""Contrast twins flip the deciding slot and the label, and nothing else (issue #25)."""

import pytest

from instructkit.data.tasks.suite.generators import TWINS, generate, twin


def _word_diff(a: str, b: str) -> list[tuple[str, str]]:
    wa, wb = a.split(), b.split()
    assert len(wa) == len(wb)
    return [(x, y) for x, y in zip(wa, wb) if x != y]


@pytest.mark.parametrize("gen", sorted(TWINS))
def test_twin_flips_the_label_and_nothing_else(gen):
    rows = generate(gen, 200, 0, split="validation")
    made = 0
    for r in rows:
        t = twin(gen, r)
        if t is None:
            assert gen.startswith("nli") and r["label"] == 1  # neutral NLI rows have no twin
            continue
        made += 1
        changed = {k for k in r if r[k] != t[k]}
        slot = "pronoun" if gen.startswith("coref") else "hypothesis"
        assert changed == ({"sentence", "pronoun", "label"} if slot == "pronoun" else {"hypothesis", "label"})
        text = "sentence" if slot == "pronoun" else "hypothesis"
        assert len(_word_diff(r[text], t[text])) == 1  # one word: the pronoun / the stated value
        assert t["label"] == (1 - r["label"] if slot == "pronoun" else 2 - r["label"])
        assert twin(gen, t) is not None and twin(gen, t)["label"] == r["label"]  # flips back
    assert made >= 100


def test_coref_twin_pronoun_decides_the_referent():
    from instructkit.data.tasks.suite.vocab import WOMEN
    for r in generate("coref_gender", 50, 0, split="validation"):
        t = twin("coref_gender", r)
        for x in (r, t):
            assert (x["options"][x["label"]] in WOMEN) == (x["pronoun"] == "she")
    for r in generate("coref_role", 50, 0, split="validation"):
        t = twin("coref_role", r)
        for x in (r, t):
            assert x["options"][x["label"]].endswith("s") == (x["pronoun"] == "they")
