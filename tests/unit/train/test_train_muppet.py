"""Muppet: every optimizer step holds >= k tasks (real data path: mixture -> prepare -> rows -> loop), and the
scaled loss of a uniform guess over the answer choices is 1.0 for every classification task of the suite."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from instructkit.chat import Conversation, Renderer
from instructkit.config.base import validate
from instructkit.data.tasks import builtin_tasks
from instructkit.data.tasks.formats import render_examples
from instructkit.errors import ConfigError
from instructkit.config.recipe import Recipe
from instructkit.train.loss import CausalLMLoss, chunked_lm_loss
from instructkit.train.muppet import class_counts, hetero_groups, weight_for
from instructkit.train.packing import Example, best_fit_decreasing

CLASSIFICATION = [t for t in builtin_tasks() if t.metric == "accuracy"]


def _trained(tok, prompt: str, answer: str) -> list[int]:
    r = Renderer(tok, "plain")(Conversation.from_pairs(prompt, answer))
    return [i for i, lab in zip(r.input_ids, r.labels) if lab != -100]


@pytest.mark.parametrize("task", CLASSIFICATION, ids=[t.id for t in CLASSIFICATION])
def test_uniform_guess_costs_one_in_every_classification_task(task):
    from instructkit.models.tiny import make_tiny_tokenizer
    tok = make_tiny_tokenizer()
    exs = [e for e in render_examples(task, "train", "zero_shot", limit=2) if e.answer_choices]
    assert exs, f"{task.id}: no classification template"
    recs = [{"task": e.task_id, "template": e.template_id, "target": e.target} for e in exs]
    classes = class_counts(recs, {}, 10)
    for e in exs:
        n = classes[f"{e.task_id}/{e.template_id}"]
        assert n == len(set(e.answer_choices)) >= 2
        seqs = [_trained(tok, e.prompt, c) for c in dict.fromkeys(e.answer_choices)]
        target = _trained(tok, e.prompt, e.target)
        # the uniform guess: every choice equally likely, spread over its tokens (a trie of the choices)
        rows, cands = [], seqs
        for j, t in enumerate(target):
            nxt = [s[j] for s in cands]
            row = torch.full((len(tok),), -1e4)
            for v in set(nxt):
                row[v] = math.log(nxt.count(v) / len(nxt))
            rows.append(row)
            cands = [s for s in cands if s[j] == t]
        w = torch.full((len(target),), weight_for(n, 1.0))
        loss = chunked_lm_loss(nn.Identity(), torch.stack(rows), torch.tensor(target), 0, weights=w)
        assert loss.item() == pytest.approx(1.0, abs=1e-5), (task.id, e.template_id, n)


def test_generative_tasks_get_the_generative_weight():
    recs = [{"task": "arith_add_sub", "template": "t01", "target": str(i)} for i in range(5)]
    assert class_counts(recs, {}, 10) == {"arith_add_sub/t01": 0}
    assert class_counts(recs, {"arith_add_sub": 4}, 10) == {"arith_add_sub/t01": 4}
    assert weight_for(0, 0.5) == 0.5


def test_loss_weights_reach_the_loss():
    from instructkit.models.tiny import make_tiny_model, make_tiny_tokenizer
    tok = make_tiny_tokenizer()
    wrapper = CausalLMLoss(make_tiny_model(tok))
    ids = torch.tensor([[5, 6, 7, 8]])
    labels = torch.tensor([[6, 7, 8, -100]])
    pos = torch.arange(4)[None]
    plain = wrapper(input_ids=ids, labels=labels, position_ids=pos)
    w = torch.tensor([[0.5, 0.5, 0.5, 0.5]])
    assert wrapper(input_ids=ids, labels=labels, position_ids=pos, loss_weights=w).item() == \
        pytest.approx(0.5 * plain.item(), rel=1e-5)


def test_hetero_rows_mix_k_tasks_where_best_fit_would_not():
    import random
    rng = random.Random(0)
    tasks = [t for t in "abcde" for _ in range(rng.randint(5, 40))]
    lengths = [rng.randint(10, 120) for _ in tasks]
    groups, stats = hetero_groups(tasks, lengths, 512, 3)
    assert all(len({tasks[i] for i in g}) >= 3 for g in groups)
    assert all(sum(lengths[i] for i in g) <= 512 for g in groups)
    assert sorted({i for g in groups for i in g}) == list(range(len(tasks)))  # nothing dropped
    # the plain packer on the same data puts single-task rows together (the property is not free)
    order = sorted(range(len(tasks)), key=lambda i: tasks[i])
    plain = best_fit_decreasing([lengths[i] for i in order], 120)
    assert any(len({tasks[order[i]] for i in g}) < 3 for g in plain)
    with pytest.raises(ConfigError, match="min_tasks=6"):
        hetero_groups(tasks, lengths, 512, 6)


def test_every_optimizer_step_holds_k_tasks(tmp_path, monkeypatch):
    """The whole path: a mixture file -> data prepare -> task ids from meta -> rows -> the training loop."""
    from instructkit.data.tasks.build import run_mix
    from instructkit.models.tiny import save_tiny
    from instructkit.train import train

    k = 3
    model_dir = save_tiny(str(tmp_path / "tiny"))
    rec = validate(Recipe, {
        "output_dir": str(tmp_path / "run"), "model": {"name_or_path": model_dir, "chat_template": "plain"},
        "mix": {"tasks": ["sentiment_movie", "nli_facts", "topic_news", "arith_add_sub", "bool_expr"],
                "cap": 12, "rate_cap": 12},
        "data": {"max_length": 256, "val_fraction": 0.0, "cache_dir": str(tmp_path / "cache")},
        "train": {"max_steps": 4, "micro_batch_size": 1, "grad_accum": 2, "pack_tokens": 400, "progress": False,
                  "tensorboard": False, "muppet": {"min_tasks": k}}}, "test")
    run_mix(rec.mix, 0, str(tmp_path / "mix"), plot=False)
    rec = rec.model_copy(update={"data": rec.data.model_copy(update={"paths": [str(tmp_path / "mix/mixture.jsonl")]})})
    seen: list[set[int]] = []
    fwd = CausalLMLoss.forward

    def spy(self, *a, task_ids=None, **kw):
        if self.training:
            seen.append(set(task_ids[task_ids >= 0].tolist()))
        return fwd(self, *a, **kw)
    monkeypatch.setattr(CausalLMLoss, "forward", spy)
    res = train(rec)
    steps = [seen[i] | seen[i + 1] for i in range(0, len(seen), 2)]
    assert len(steps) == 4
    assert all(len(s) >= k for s in steps), steps
    info = res.summary["data"]["muppet"]
    assert set(info["classification_tasks"]) == {"sentiment_movie", "nli_facts", "topic_news", "bool_expr"}
    assert info["n_classes"]["nli_facts"] == [0, 3]  # 3 choices; the inverted template is generative
