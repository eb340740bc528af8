"""Log-likelihood with the LM head at scored positions only: the same numbers as the model's own forward,
and no batch x positions x vocabulary logits tensor (memory bounded by the chunk, not by the batch)."""

from __future__ import annotations

import random

import pytest
import torch

import instructkit.lm.scoring as scoring
from instructkit.lm.api import LoglikelihoodRequest as R
from instructkit.lm.hf import HFModel
from tests.soft_cap import gemma2_soft_capped

WORDS = "the cat sat on a mat and then it saw one more bird fly over the water near five old trees".split()


def _requests(seed=0, n=14):
    rng = random.Random(seed)
    reqs = []
    for _ in range(n):
        ctx = " ".join(rng.choices(WORDS, k=rng.randint(2, 30)))
        reqs += [R(ctx, " " + " ".join(rng.choices(WORDS, k=rng.randint(1, 6)))) for _ in range(rng.randint(1, 4))]
    return reqs


def _score(model, tok, reqs, **kw):
    return HFModel(model, tok, progress=False, batch_size=5, **kw).loglikelihood(reqs)


@pytest.fixture()
def forward_only(monkeypatch):
    """The previous path: the model's forward (logits from the first scored position on)."""
    monkeypatch.setattr(scoring, "_head_path", lambda model: None)


def _same(a, b, tol):
    assert [x.n_tokens for x in a] == [y.n_tokens for y in b]
    assert max(abs(x.logprob - y.logprob) for x, y in zip(a, b)) < tol
    assert [x.is_greedy for x in a] == [y.is_greedy for y in b]


def test_head_path_equals_model_forward(tiny_model, tiny_tokenizer, monkeypatch):
    reqs = _requests()
    lm = HFModel(tiny_model, tiny_tokenizer, progress=False, batch_size=5)
    assert scoring.direct_head(lm) is not None  # the by-hand head reproduces the tiny Llama's logits
    mine = lm.loglikelihood(reqs)
    monkeypatch.setattr(scoring, "_head_path", lambda model: None)
    theirs = _score(tiny_model, tiny_tokenizer, reqs)
    _same(mine, theirs, 1e-5)
    for prefix in (0, 8):  # with and without a shared-prefix KV cache
        _same(_score(tiny_model, tiny_tokenizer, reqs, prefix_min_tokens=prefix), theirs, 1e-5)


def test_chunks_do_not_change_the_numbers_and_bound_the_logits(tiny_model, tiny_tokenizer, monkeypatch):
    reqs = _requests(1)
    whole = _score(tiny_model, tiny_tokenizer, reqs)
    vocab = tiny_model.get_output_embeddings().weight.shape[0]
    monkeypatch.setattr(scoring, "CHUNK_BYTES", 4 * vocab * 16)  # 16 positions per chunk
    rows = []
    hook = tiny_model.get_output_embeddings().register_forward_hook(lambda m, i, o: rows.append(o.shape))
    try:
        chunked = _score(tiny_model, tiny_tokenizer, reqs)
    finally:
        hook.remove()
    _same(chunked, whole, 1e-5)
    scored = sum(x.n_tokens for x in chunked)
    batches = [s for s in rows if len(s) == 2]  # (positions, vocab); the 3D ones are the one-time check
    assert sum(s[0] for s in batches) == scored  # the head ran at scored positions only ...
    assert max(s[0] for s in batches) <= 16  # ... never more than a chunk of them at once
    # the one-time head-path check (model forward + by-hand head on 9 tokens), once per model
    assert [tuple(s) for s in rows if len(s) == 3] == [(1, 9, vocab)] * 2


def test_soft_capped_head_is_reproduced_or_refused(tiny_tokenizer, monkeypatch):
    m = gemma2_soft_capped(tiny_tokenizer)
    reqs = _requests(2, n=6)
    lm = HFModel(m, tiny_tokenizer, progress=False, batch_size=5)
    assert scoring.direct_head(lm) is not None  # soft-capping applied by hand
    mine = lm.loglikelihood(reqs)
    with monkeypatch.context() as mp:
        mp.setattr(scoring, "_head_path", lambda model: None)
        theirs = _score(m, tiny_tokenizer, reqs)
    _same(mine, theirs, 1e-4)
    import instructkit.models.head as head
    monkeypatch.setattr(head, "_POSTPROCESS", {})  # as if we did not know soft-capping
    lm2 = HFModel(m, tiny_tokenizer, progress=False, batch_size=5)
    assert scoring.direct_head(lm2) is None  # the check sees the uncapped head differ: the model's forward
    _same(lm2.loglikelihood(reqs), theirs, 1e-4)
