"""Shared-prefix reuse gives the same log-likelihoods as full forwards, and really reuses the prefix."""

from __future__ import annotations

import random

import pytest

from instructkit.lm.api import LoglikelihoodRequest
from instructkit.lm.hf import HFModel
from instructkit.lm.prefix import prefix_groups

WORDS = "the cat sat on a mat and then it saw one more bird fly over the water near five old trees".split()


def test_prefix_groups_cover_every_request_and_leave_a_context_token():
    ctx = [[1, 2, 3, 4, 5, 9], [1, 2, 3, 4, 5, 8, 7], [1, 2, 3, 4, 6], [7, 7, 7], [1, 2, 3, 4, 5, 9]]
    groups = prefix_groups(ctx, min_len=3)
    assert sorted(i for _, g in groups for i in g) == [0, 1, 2, 3, 4]
    by = {tuple(sorted(g)): n for n, g in groups}
    assert by[(0, 1, 2, 4)] == 4 and by[(3,)] == 0
    for n, g in groups:
        assert all(len(ctx[i]) > n for i in g)  # every member keeps >= 1 context token after the prefix


def _requests(seed=0, shots=6, questions=7):
    rng = random.Random(seed)
    exemplars = "\n\n".join(f"Q: {' '.join(rng.choices(WORDS, k=12))}?\nA: {rng.choice(WORDS)}" for _ in range(shots))
    reqs = []
    for _ in range(questions):
        q = f"{exemplars}\n\nQ: {' '.join(rng.choices(WORDS, k=rng.randint(3, 15)))}?\nA:"
        reqs += [LoglikelihoodRequest(q, " " + c) for c in rng.sample(WORDS, 3)]
    reqs.append(LoglikelihoodRequest("short and alone", " yes"))
    return reqs


def _compare(model, tok, atol):
    reqs = _requests()
    full = HFModel(model, tok, prefix_min_tokens=0, progress=False, batch_size=4).loglikelihood(reqs)
    lm = HFModel(model, tok, prefix_min_tokens=16, progress=False, batch_size=4)
    reused = lm.loglikelihood(reqs)
    assert lm.stats["ll_prefix_tokens_reused"] > 100, "the exemplars must actually be shared"
    worst = max(abs(a.logprob - b.logprob) for a, b in zip(full, reused))
    assert worst < atol, worst
    assert [a.is_greedy for a in full] == [b.is_greedy for b in reused]


def test_prefix_reuse_equals_full_forwards_tiny(tiny_model, tiny_tokenizer):
    _compare(tiny_model, tiny_tokenizer, 1e-4)


@pytest.mark.integration
def test_prefix_reuse_equals_full_forwards_smollm2(smollm2_model, smollm2_tokenizer):
    _compare(smollm2_model, smollm2_tokenizer, 1e-4)


def test_contexts_without_a_shared_prefix_are_batched_together(tiny_model, tiny_tokenizer):
    """Zero-shot items share no prefix: they must fill batches of batch_size rows, not one forward each
    (each item alone was a prefix 'group' of one - 5x slower on CPU, same numbers)."""
    rng = random.Random(1)
    reqs = [LoglikelihoodRequest(" ".join(rng.choices(WORDS, k=rng.randint(4, 12))), " " + c)
            for _ in range(24) for c in ("yes", "no", "maybe")]
    lm = HFModel(tiny_model, tiny_tokenizer, prefix_min_tokens=16, progress=False, batch_size=8)
    calls = []
    inner = lm.model.forward
    lm.model.forward = lambda *a, **k: calls.append(1) or inner(*a, **k)
    batched = lm.loglikelihood(reqs)
    rows = len({tuple(lm.encode_pair(r.context, r.continuation)[0]) for r in reqs})
    assert len(calls) <= -(-rows // 8), f"{len(calls)} forwards for {rows} distinct contexts at batch 8"
    alone = HFModel(tiny_model, tiny_tokenizer, prefix_min_tokens=0, progress=False, batch_size=1).loglikelihood(reqs)
    assert max(abs(a.logprob - b.logprob) for a, b in zip(alone, batched)) < 1e-4
