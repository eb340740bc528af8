"""Real data in ../shared: promptsource templates, the T0 prompt/completion files, GSM8K rationales."""


import pytest

from instructkit.data.tasks import load_task
from instructkit.data.tasks.formats import render_examples
from instructkit.data.tasks.promptsource import check_tree, load_promptsource
from instructkit.data.tasks.t0 import load_t0_dir, split_name, known_prefixes

pytestmark = pytest.mark.shared


def test_promptsource_all_files_parse(shared_data):
    files = sorted((shared_data / "promptsource_templates").rglob("templates.yaml"))
    assert len(files) == 279
    n = sum(len(load_promptsource(f)[1]) for f in files)
    assert n == 2085
    name, tpls = load_promptsource(shared_data / "promptsource_templates" / "super_glue" / "rte" / "templates.yaml")
    assert name == "super_glue/rte"
    t = next(x for x in tpls if x.answer_choices)
    row = {"premise": "A dog runs.", "hypothesis": "An animal runs.", "label": 0}
    prompt, target, choices = t.render(row)
    assert "A dog runs." in prompt and target == choices[0]


@pytest.mark.slow  # ~30 s: renders all 2,085 templates; figures recorded in docs/tasks.md
def test_promptsource_render_figures(shared_data):
    rep = check_tree(shared_data / "promptsource_templates")
    assert rep.files == 279 and rep.templates == 2085 and rep.rendered >= 1600


def test_t0_files_load_with_dataset_and_template_ids(shared_data):
    pre = known_prefixes(shared_data / "promptsource_templates")
    assert split_name("cnn_dailymail_3_0_0_tldr_summary", pre) == ("cnn_dailymail_3_0_0", "tldr_summary")
    assert split_name("adversarial_qa_dbert_based_on", pre) == ("adversarial_qa_dbert", "based_on")
    ds = load_t0_dir(shared_data / "t0_train")
    by = {d.id: d for d in ds}
    assert sum(len(d.templates) for d in ds) == len(list((shared_data / "t0_train").glob("*.jsonl")))
    assert by["paws_labeled_final"].cluster == "paraphrase" and "t0" not in {d.cluster for d in ds}
    assert by["trec"].skipped.get("empty_completion", 0) > 0  # real files: counted, not silently dropped
    p, c = by["imdb"].templates["imdb/Reviewer_Enjoyment"][0]
    assert not c.endswith("<|endoftext|>") and c


def test_gsm8k_task_with_rationales(shared_data, tmp_path):
    y = tmp_path / "gsm8k.yaml"
    y.write_text(f"id: gsm8k\ncluster: arithmetic\nmetric: exact_match\n"
                 f"source: {{files: {{train: {shared_data}/gsm8k/train.jsonl, test: {shared_data}/gsm8k/test.jsonl}}}}\n"
                 "preprocess: gsm8k\nrationale: rationale\ninclude: arith_add_sub\n")
    t = load_task(str(y))
    assert t.eval_split == "test"
    ex = render_examples(t, "test", "few_shot_cot", k=2, limit=5, templates="one")
    for e in ex:
        assert "<<" not in e.prompt + e.target and "####" not in e.prompt + e.target
        assert e.target.endswith(f"So the answer is {e.meta['answer']}.")
        assert e.meta["answer"].lstrip("-").isdigit()
