"""Flan 2022 formats: zero-shot, few-shot (never the evaluated row), CoT, options."""

import pytest

from instructkit.data.tasks import load_task
from instructkit.data.tasks.formats import COT_TRIGGER, options_block, render_examples


def test_zero_shot_classification_target_in_choices_and_conversation():
    ex = render_examples(load_task("nli_facts"), "validation", "zero_shot", limit=5)
    assert len(ex) == 5 * 9  # all non-inverted templates on the eval split
    for e in ex:
        assert e.answer_choices and e.target in e.answer_choices
        conv = e.to_conversation().validate()
        assert conv.turns("user")[0].content == e.prompt and conv.last_assistant == e.target
        assert conv.meta["task"] == "nli_facts" and conv.meta["template"] == e.template_id


def test_inverted_templates_only_in_training_split():
    t = load_task("sentiment_movie")
    inv = {tp.id for tp in t.templates if tp.inverted}
    assert not inv & {e.template_id for e in render_examples(t, "validation", limit=3)}
    assert inv <= {e.template_id for e in render_examples(t, "train", limit=3)}


def test_options_listed_flan_style():
    t = load_task("sentiment_restaurant")
    tpl = t.templates[0]  # choices not in prompt
    e = [x for x in render_examples(t, "validation", limit=1, options=True) if x.template_id == tpl.id][0]
    assert e.prompt.endswith("OPTIONS:\n- negative\n- positive") and options_block(["a"]) == "OPTIONS:\n- a"
    e2 = [x for x in render_examples(t, "validation", limit=1, options=False) if x.template_id == tpl.id][0]
    assert "OPTIONS" not in e2.prompt


@pytest.mark.parametrize("task_id", ["arith_add_sub", "nli_facts", "entity_city", "sort_words"])
def test_few_shot_never_contains_its_own_row(task_id):
    t = load_task(task_id)
    # evaluate TRAINING rows: the exemplar pool is the same split, so the row itself is a candidate
    rows = t.load_split("train")[:150]
    ex = render_examples(t, "train", "few_shot", k=3, seed=1, templates="one", inverted=False, rows=rows,
                         options=False)
    zero = render_examples(t, "train", "zero_shot", seed=1, templates="one", inverted=False, rows=rows,
                           options=False)
    assert len(ex) == len(rows)
    for e, z in zip(ex, zero):
        assert e.template_id == z.template_id  # same seeded template draw
        shots = e.prompt[: -len(z.prompt)]
        assert e.prompt.endswith(z.prompt) and shots.count("\n\n") >= 3 - 1
        assert z.prompt not in shots, "the evaluated example appears among its exemplars"


def test_few_shot_dedupes_by_content():
    t = load_task("arith_add_sub")
    row = t.load_split("train")[0]
    pool_dupes = [dict(row) for _ in range(5)] + t.load_split("train")[1:4]
    from instructkit.data.tasks import formats
    import random
    prompt, _, _, _ = formats._render_one(t, t.templates[0], row, False, False)
    keys = [formats.row_key(r) for r in pool_dupes]
    out = formats._with_shots(t, t.templates[0], row, prompt, False, False, random.Random(0), pool_dupes, keys, 3)
    assert out.count(row["question"]) == 1  # only the evaluated one, none of its 5 copies


def test_cot_formats():
    t = load_task("arith_multiply")
    z = render_examples(t, "validation", "zero_shot_cot", limit=3, templates="one")
    for e in z:
        assert e.prompt.endswith(COT_TRIGGER)
        assert e.target.endswith(f"So the answer is {e.meta['answer']}.") and " = " in e.target
    f = render_examples(t, "validation", "few_shot_cot", k=2, limit=3, templates="one")
    assert all(e.prompt.count("So the answer is") == 2 for e in f)
    with pytest.raises(ValueError, match="rationale"):
        render_examples(load_task("nli_facts"), "validation", "zero_shot_cot", limit=1)


def test_render_is_deterministic():
    t = load_task("topic_news")
    a = render_examples(t, "validation", "few_shot", seed=3, limit=10, templates="one")
    b = render_examples(t, "validation", "few_shot", seed=3, limit=10, templates="one")
    c = render_examples(t, "validation", "few_shot", seed=4, limit=10, templates="one")
    assert [e.prompt for e in a] == [e.prompt for e in b] != [e.prompt for e in c]
