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


def test_hold_out_a_data_set_of_a_seen_cluster():
    """Design (b), T0-style: hold out one data set; its sibling in the same cluster still trains."""
    from instructkit.data.tasks import load_task
    from instructkit.data.tasks.mixture import MixSpec, build_mixture
    tasks = [load_task(t) for t in ("sentiment_movie", "sentiment_restaurant", "topic_news")]
    records, man = build_mixture(tasks, MixSpec(cap=5, rate_cap=5), hold_out=["sentiment_restaurant"])
    assert man["held_out"]["tasks"] == ["sentiment_restaurant"]
    assert set(man["train_tasks"]) == {"sentiment_movie", "topic_news"}


def test_compositional_task_composes_two_trained_skills():
    from instructkit.data.tasks.suite.generators import generate
    for r in generate("sort_initials", 20, 0):
        ws = r["question"].split()
        assert r["answer"] == "".join(w[0] for w in sorted(ws))
