"""HFModel: loglikelihood equals a naive per-request forward; packing == naive; padding; generation."""

import pytest
import torch

from instructkit.lm.api import GenerateRequest, LoglikelihoodRequest as R
from instructkit.lm.hf import HFModel, cut_at_stop


@pytest.fixture(scope="module")
def lm():
    from instructkit.models import make_tiny_model, make_tiny_tokenizer
    tok = make_tiny_tokenizer()
    return HFModel(make_tiny_model(tok), tok, batch_size=3, progress=False)


def naive(lm, r):
    """By hand: encode as lm-eval does, one forward over context+continuation, sum the log-probs."""
    tok = lm.tokenizer
    ctx, cont = r.context, r.continuation
    n = len(ctx) - len(ctx.rstrip())
    if n:
        cont, ctx = ctx[-n:] + cont, ctx[:-n]
    c = tok(ctx)["input_ids"]
    x = tok(ctx + cont)["input_ids"][len(c):]
    with torch.no_grad():
        lp = torch.log_softmax(lm.model(torch.tensor([c + x])).logits.float(), -1)[0]
    return sum(lp[len(c) - 1 + j, x[j]].item() for j in range(len(x))), len(x)


REQS = ([R("The answer is ", c) for c in ["yes", "no", "maybe so", "true false zero"]]
        + [R("Question: two plus two?\nAnswer:", c) for c in [" four", " five", " three hundred"]]
        + [R("Hi", " there"), R("A much longer context of many words: the sum of one and two is", " three")])


def test_loglikelihood_matches_naive_forward(lm):
    res = lm.loglikelihood(REQS)
    for r, o in zip(REQS, res):
        ref, n = naive(lm, r)
        assert abs(o.logprob - ref) < 1e-4, (r, o.logprob, ref)
        assert o.n_tokens == n and o.n_chars == len(r.continuation)


def test_prefix_reuse_packs_choices_into_one_row(lm):
    enc = [lm.encode_pair(r.context, r.continuation) for r in REQS]
    from instructkit.lm.packed import pack_rows
    rows = pack_rows(enc, lm.max_length)
    # 4 distinct contexts -> exactly one row each: the prompt runs once, not once per choice
    assert len(rows) == 4
    assert sorted(len(conts) for _, conts in rows) == [1, 1, 3, 4]


def test_padded_batch_equals_single(lm):
    batched = lm.loglikelihood(REQS)
    lm.batch_size = 1
    try:
        single = [lm.loglikelihood([r])[0] for r in REQS]
    finally:
        lm.batch_size = 3
    for a, b in zip(batched, single):
        assert abs(a.logprob - b.logprob) < 1e-4
        assert a.is_greedy == b.is_greedy


def test_trailing_space_moves_to_continuation(lm):
    assert lm.encode_pair("Answer: ", "yes") == lm.encode_pair("Answer:", " yes")


def test_long_context_is_left_truncated(lm):
    old = lm.max_length
    lm.max_length = 8
    try:
        r = R(" ".join(["the"] * 40), " answer")
        (res,) = lm.loglikelihood([r])
        assert res.n_tokens >= 1 and res.logprob < 0
    finally:
        lm.max_length = old


def test_is_greedy_flag(lm):
    # a continuation made of the model's own greedy tokens is greedy; compare every flag with a by-hand argmax
    ctx = "The answer is"
    ids = lm.tokenizer(ctx)["input_ids"]
    with torch.no_grad():
        for _ in range(3):
            ids = ids + [int(lm.model(torch.tensor([ids])).logits[0, -1].argmax())]
    n_ctx = len(lm.tokenizer(ctx)["input_ids"])
    cont = lm.tokenizer.decode(ids[n_ctx:])
    reqs = REQS + [R(ctx, cont)]
    for r, o in zip(reqs, lm.loglikelihood(reqs)):
        c, x = lm.encode_pair(r.context, r.continuation)
        with torch.no_grad():
            am = lm.model(torch.tensor([c + x])).logits[0].argmax(-1)
        assert o.is_greedy == all(int(am[len(c) - 1 + j]) == x[j] for j in range(len(x)))
    assert lm.encode_pair(ctx, cont)[1] != ids[n_ctx:] or o.is_greedy


def test_generate_greedy_batched_equals_single_and_stops(lm):
    reqs = [GenerateRequest(prompt="The answer", max_new_tokens=8),
            GenerateRequest(prompt="Hi there, how are you", max_new_tokens=8)]
    batched = lm.generate(reqs)
    single = [lm.generate([r])[0] for r in reqs]
    assert [b.texts for b in batched] == [s.texts for s in single]
    full = batched[0].texts[0]
    assert len(full) > 2
    stop = full[1:3]
    (cut,) = lm.generate([GenerateRequest(prompt="The answer", max_new_tokens=8, stop=[stop])])
    assert stop not in cut.texts[0] and full.startswith(cut.texts[0])


def test_generate_n_samples_seeded_and_chat(lm):
    r = GenerateRequest(messages=[{"role": "user", "content": "hi"}], max_new_tokens=6, temperature=1.0, n=3, seed=7)
    a, b = lm.generate([r])[0], lm.generate([r])[0]
    assert len(a.texts) == 3 and a.texts == b.texts
    assert len(a.n_tokens) == 3 and all(0 < n <= 6 for n in a.n_tokens)


def test_cut_at_stop():
    assert cut_at_stop("abc\n\nQ: x", ["\n\nQ:", "zz"]) == "abc"
    assert cut_at_stop("abc", []) == "abc"
