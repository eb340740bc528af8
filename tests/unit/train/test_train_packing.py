"""Packing: best-fit decreasing, per-example label shift, and no cross-contamination in the forward."""

from __future__ import annotations

import random

import pytest
import torch

from instructkit.train.loss import CausalLMLoss, token_logprobs
from instructkit.train.packing import (IGNORE_INDEX, Example, best_fit_decreasing, collate_packed, collate_padded,
                                       make_rows, shift_labels, to_examples)


def test_bfd_fills_bins_within_capacity_and_uses_every_example_once():
    rng = random.Random(0)
    lengths = [rng.randint(1, 100) for _ in range(300)]
    bins = best_fit_decreasing(lengths, 128)
    flat = sorted(i for b in bins for i in b)
    assert flat == list(range(300))
    assert all(sum(lengths[i] for i in b) <= 128 for b in bins)
    # near the lower bound: best fit wastes little
    assert len(bins) <= -(-sum(lengths) // 128) * 1.1 + 1


def test_bfd_picks_the_tightest_bin():
    # 70 and 60 open two bins (remaining 30, 40); 30 must go to the bin with exactly 30 left, then 40 fits the other
    assert best_fit_decreasing([70, 60, 30, 40], 100) == [[0, 2], [1, 3]]
    with pytest.raises(ValueError, match="more than the row budget"):
        best_fit_decreasing([5, 200], 100)


def test_shift_labels_masks_example_boundary():
    assert shift_labels([-100, -100, 7, 8, 9]) == [-100, 7, 8, 9, IGNORE_INDEX]
    rows = make_rows([Example([1, 2, 3], shift_labels([1, 2, 3])), Example([4, 5], shift_labels([4, 5]))], True, 16)
    assert len(rows) == 1
    r = rows[0]
    assert r["position_ids"].tolist() == [0, 1, 2, 0, 1]
    # the last token of the first example must not be trained to predict the first token of the second
    assert r["labels"].tolist() == [2, 3, IGNORE_INDEX, 5, IGNORE_INDEX]


def test_to_examples_counts_truncation_and_dropped():
    recs = [{"input_ids": list(range(10)), "labels": list(range(10))},
            {"input_ids": [1, 2, 3], "labels": [-100, -100, 3]},
            {"input_ids": [1, 2, 3], "labels": [5, -100, -100]}]  # only the first token: nothing left after shift
    ex, stats = to_examples(recs, max_length=6)
    assert [len(e) for e in ex] == [6, 3]
    assert stats == {"examples_in": 3, "truncated": 1, "no_trained_tokens": 1, "examples_used": 2}


def test_collate_packed_flattens_the_micro_batch_into_one_row():
    # flash-attention-2 treats a batch as packed only when it has ONE row: the collator must flatten
    rows = make_rows([Example([1, 2, 3, 4], [2, 3, 4, -100]), Example([5, 6], [6, -100])], False, 16)
    b = collate_packed(rows, pad_id=0)
    assert b["input_ids"].tolist() == [[1, 2, 3, 4, 5, 6]]
    assert b["position_ids"].tolist() == [[0, 1, 2, 3, 0, 1]]
    assert b["labels"].tolist() == [[2, 3, 4, -100, 6, -100]]
    assert int(b["num_tokens"]) == 6
    p = collate_padded(rows, pad_id=0)
    assert p["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]


def _examples(tok, n=6, seed=0):
    rng = random.Random(seed)
    words = "the a of to and in is it you that he was for on are with".split()
    out = []
    for _ in range(n):
        ids = tok(" ".join(rng.choices(words, k=rng.randint(3, 40))))["input_ids"]
        out.append(Example(ids, shift_labels(ids)))  # every position trained: compare all of them
    return out


def check_packed_equals_unpacked(model, examples, atol=1e-4):
    model.eval()
    row = make_rows(examples, True, 10_000)
    assert len(row) == 1
    packed = collate_packed(row, pad_id=0)
    with torch.no_grad():
        lp_packed = token_logprobs(model, packed)[0]
        singles = [token_logprobs(model, collate_padded([{"input_ids": torch.tensor(e.input_ids),
                                                          "labels": torch.tensor(e.labels)}], 0))[0]
                   for e in examples]
    # BFD orders longest first: map back by position resets
    starts = (packed["position_ids"][0] == 0).nonzero().flatten().tolist() + [packed["input_ids"].shape[1]]
    seg = {tuple(packed["input_ids"][0, s:e].tolist()): lp_packed[s:e] for s, e in zip(starts, starts[1:])}
    worst = max((seg[tuple(e.input_ids)] - lp).abs().max().item() for e, lp in zip(examples, singles))
    assert worst < atol, worst
    return packed


def test_packed_logprobs_equal_one_by_one_tiny(tiny_tokenizer, tiny_model):
    packed = check_packed_equals_unpacked(tiny_model, _examples(tiny_tokenizer))
    # the check can fail: with an all-ones attention mask the examples attend to each other
    with torch.no_grad():
        bad = tiny_model(input_ids=packed["input_ids"], position_ids=packed["position_ids"],
                         attention_mask=torch.ones_like(packed["input_ids"]), use_cache=False).logits
        good = tiny_model(input_ids=packed["input_ids"], position_ids=packed["position_ids"], use_cache=False).logits
    assert (bad - good).abs().max() > 1e-3


def test_loss_wrapper_sum_matches_per_example_and_chunking(tiny_tokenizer, tiny_model):
    ex = _examples(tiny_tokenizer, n=5, seed=1)
    packed = collate_packed(make_rows(ex, True, 10_000), 0)
    with torch.no_grad():
        per_example = sum(-token_logprobs(tiny_model, collate_padded(make_rows([e], False, 10_000), 0)).sum()
                          for e in ex)
        full = CausalLMLoss(tiny_model, 0)(**packed)
        chunked = CausalLMLoss(tiny_model, 7)(**packed)
    assert torch.allclose(full, per_example, atol=1e-3, rtol=1e-5)
    assert torch.allclose(full, chunked, atol=1e-4, rtol=1e-6)


def test_chunked_loss_gradients_match_unchunked(tiny_tokenizer):
    from instructkit.models import make_tiny_model

    ex = _examples(tiny_tokenizer, n=3, seed=2)
    batch = collate_packed(make_rows(ex, True, 10_000), 0)
    grads = []
    for chunk in (0, 5):
        m = make_tiny_model(tiny_tokenizer)
        CausalLMLoss(m, chunk)(**batch).backward()
        grads.append(torch.cat([p.grad.flatten() for p in m.parameters()]))
    assert torch.allclose(grads[0], grads[1], atol=1e-5)


def test_gradient_checkpointing_gives_the_same_gradients(tiny_tokenizer):
    from instructkit.models import make_tiny_model
    from instructkit.train.methods import enable_checkpointing

    batch = collate_packed(make_rows(_examples(tiny_tokenizer, n=3, seed=4), True, 10_000), 0)
    grads = []
    for gc in (False, True):
        m = make_tiny_model(tiny_tokenizer)
        m.train()
        if gc:
            enable_checkpointing(m)
            assert m.model.gradient_checkpointing
        CausalLMLoss(m)(**batch).backward()
        grads.append(torch.cat([p.grad.flatten() for p in m.parameters()]))
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def test_packed_training_attends_per_example_and_padded_training_keeps_sdpa(tiny_tokenizer):
    """build_model switches sdpa to sdpa_packed only for packed rows (models/attention.py)."""
    from instructkit.models.attention import NAME
    from instructkit.models.tiny import make_tiny_model
    from instructkit.train.methods import AdapterSpec, build_model

    spec = AdapterSpec(4, 8, 0.0, ["q_proj", "v_proj"])
    for packed, want in ((True, NAME), (False, "sdpa")):
        m = build_model("unused", method="lora", dtype="float32", attn_implementation="sdpa", spec=spec,
                        gradient_checkpointing=False, model=make_tiny_model(tiny_tokenizer), packed=packed)
        assert m.config._attn_implementation == want
