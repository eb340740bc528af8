"""Built-in suite: train and evaluation splits are disjoint by construction, rows are distinct, and the
held-out tasks' labels follow from cues a small model can learn (issue #16)."""

import re

import pytest

from instructkit.data.tasks import builtin_tasks, load_task
from instructkit.data.tasks.suite.generators import MEN, WOMEN, generate, split_of
from instructkit.errors import DataError

TASKS = builtin_tasks()


def _key(r):
    return repr(sorted((k, str(v)) for k, v in r.items()))


@pytest.mark.parametrize("task", TASKS, ids=[t.id for t in TASKS])
def test_splits_disjoint_and_distinct(task):
    train, val = task.load_split("train"), task.load_split("validation")
    tk, vk = [_key(r) for r in train], [_key(r) for r in val]
    assert len(set(tk)) == len(tk) == task.source["train"]
    assert len(set(vk)) == len(vk) == task.source["validation"]
    assert not set(tk) & set(vk), f"{task.id}: {len(set(tk) & set(vk))} validation rows also in train"
    # and no evaluation prompt is a training prompt (first template: it shows every field)
    tpl = task.templates[0]
    assert not {tpl.render(r)[0] for r in val} & {tpl.render(r)[0] for r in train}


def test_split_of_is_a_stable_partition():
    rows = generate("coref_gender", 300, seed=3)
    owners = [split_of("coref_gender", r) for r in rows]
    assert owners == [split_of("coref_gender", r) for r in rows]
    assert {"train", "validation"} <= set(owners)
    assert all(split_of("coref_gender", r) == "validation" for r in generate("coref_gender", 50, 0, split="validation"))


def test_small_space_raises_instead_of_repeating(monkeypatch):
    from instructkit.data.tasks.suite import generators as g
    monkeypatch.setitem(g.GENERATORS, "tiny", lambda rng: {"x": rng.randrange(5)})
    assert len(generate("tiny", 5, 0)) == 5
    with pytest.raises(DataError, match="only 5 distinct"):
        generate("tiny", 6, 0)
    with pytest.raises(DataError, match="unknown built-in generator"):
        generate("nope", 1, 0)


# -- the held-out tasks carry their answer in learnable cues (a rule reading the cue scores 100%) ----
def _nli_rule(premise: str, hyp: str) -> int:
    m = re.fullmatch(r"\S+ bought (\d+) (\w+)\.", hyp)
    if m:  # nli_numbers: is (count, item) stated? is the item stated at all?
        pairs = dict((item, n) for n, item in re.findall(r"(\d+) (\w+)", premise))
        return 0 if pairs.get(m[2]) == m[1] else (2 if m[2] in pairs else 1)
    rest = hyp.split(" ", 1)[1].rstrip(".")
    if rest in premise:
        return 0  # a stated fact: entailment
    relation = rest.rsplit(" ", 1)[0]  # "resides in", "is employed as a", "keeps a pet"
    return 2 if relation in premise else 1


@pytest.mark.parametrize("task_id", ["nli_facts", "nli_numbers"])
def test_nli_label_follows_from_word_overlap(task_id):
    rows = load_task(task_id).load_split("validation")
    assert sum(_nli_rule(r["premise"], r["hypothesis"]) == r["label"] for r in rows) == len(rows)
    assert {r["label"] for r in rows} == {0, 1, 2}


def test_coreference_label_follows_from_agreement():
    for r in load_task("coref_gender").load_split("validation"):
        want = WOMEN if r["pronoun"] == "she" else MEN
        assert r["options"][r["label"]] in want and r["options"][1 - r["label"]] not in want
    for r in load_task("coref_role").load_split("validation"):
        assert r["options"][r["label"]].endswith("s") == (r["pronoun"] == "they")


def test_held_out_answer_choices_are_short():
    # the old NLI choice "it is not possible to tell" was never picked by summed log-prob (issue #16)
    for tid in ("nli_facts", "nli_numbers"):
        for t in load_task(tid).templates:
            if t.answer_choices and not t.inverted:
                assert all(len(c) <= 12 for c in t.choices({"label": 0})), t.id
