"""Walk every shipped task and template; surface-cue baselines stay at chance."""

from collections import Counter

import pytest

from instructkit.data.tasks import builtin_tasks, load_task
from instructkit.data.tasks.suite.generators import generate

TASKS = builtin_tasks()
CLASSIFICATION = [t for t in TASKS if t.templates[0].answer_choices is not None]


def test_suite_shape():
    clusters = Counter(t.cluster for t in TASKS)
    assert len(clusters) >= 10
    assert all(2 <= n <= 4 for n in clusters.values()), clusters
    for t in TASKS:
        assert len(t.templates) >= 10, t.id
        assert 1 <= sum(x.inverted for x in t.templates) <= 3, t.id
        assert t.splits == ["train", "validation"]
    assert any(t.has_rationale for t in TASKS)


def test_template_ids_unique_and_stable():
    ids = [tp.id for t in TASKS for tp in t.templates]
    assert len(ids) == len(set(ids))
    assert load_task("nli_facts").templates[2].id == "nli_facts/t03"
    assert load_task("nli_numbers").templates[2].id == "nli_numbers/t03"  # include: re-prefixed


@pytest.mark.parametrize("task", TASKS, ids=[t.id for t in TASKS])
def test_every_template_renders(task):
    rows = task.load_split("validation")[:20]
    for tp in task.templates:
        for r in rows:
            prompt, target, choices = tp.render(r)
            assert prompt and target, tp.id
            if choices is not None:
                assert target in choices, (tp.id, target, choices)
                assert len(set(choices)) == len(choices)
            else:
                assert tp.inverted or task.metric != "accuracy", tp.id


def test_generators_are_deterministic_and_splits_differ():
    assert generate("nli_facts", 5, 0) == generate("nli_facts", 5, 0)
    assert generate("nli_facts", 5, 0) != generate("nli_facts", 5, 1)
    t = load_task("sentiment_movie")
    train = {repr(r) for r in t.load_split("train")}
    assert sum(repr(r) in train for r in t.load_split("validation")) < 5


def _length_classifier(train_x, train_y, classes):
    means = {c: sum(x for x, y in zip(train_x, train_y) if y == c) / max(1, train_y.count(c)) for c in classes}
    return lambda x: min(classes, key=lambda c: abs(x - means[c]))


@pytest.mark.parametrize("task", CLASSIFICATION, ids=[t.id for t in CLASSIFICATION])
def test_surface_baselines_near_chance(task):
    tpl = task.templates[0]
    ev, tr = task.load_split("validation"), task.load_split("train")[:1000]
    rendered = [tpl.render(r) for r in ev]
    n_classes = len(rendered[0][2])
    chance = 1 / n_classes
    labels = [r["label"] for r in ev]
    assert max(Counter(labels).values()) / len(labels) <= chance + 0.1, "labels not balanced"
    for pick in (max, min):  # choose the longest / shortest choice
        acc = sum(pick(c, key=len) == t for _, t, c in rendered) / len(rendered)
        assert acc <= chance + 0.1, (pick.__name__, acc)
    clf = _length_classifier([len(tpl.render(r)[0]) for r in tr], [r["label"] for r in tr], sorted(set(labels)))
    acc = sum(clf(len(p)) == r["label"] for (p, _, _), r in zip(rendered, ev)) / len(ev)
    assert acc <= chance + 0.1, ("prompt length", acc)
