"""The running batch's KV cache grows in place (issue #26): a decode step writes its new column into spare
columns instead of concatenating the whole cache, and nothing about the tokens changes."""

from __future__ import annotations

import torch

from instructkit.lm import cache as C
from instructkit.lm.engine import Engine
from instructkit.lm.sampling import SamplingParams

PROMPTS = ["the a of to", "Write a review of the movie", "sum plus minus", "yes",
           "one two three four five six seven eight nine ten hundred", "is it true that the answer"]


def test_appended_writes_in_place_until_the_headroom_is_used():
    buf, n = C._appended(None, 0, torch.ones(2, 3, 5, 4))
    assert n == 5 and buf.shape == (2, 3, 5 + C.HEADROOM, 4)
    ptr = buf.data_ptr()
    for k in range(C.HEADROOM):
        buf, n = C._appended(buf, n, torch.full((2, 3, 1, 4), float(k)))
        assert buf.data_ptr() == ptr  # no copy of the cache per step
    assert n == 5 + C.HEADROOM and torch.equal(buf[:, :, 5 + 7], torch.full((2, 3, 4), 7.0))
    grown, n = C._appended(buf, n, torch.zeros(2, 3, 1, 4))
    assert grown.data_ptr() != ptr and torch.equal(grown[:, :, : n - 1], buf[:, :, : n - 1])


def test_decode_steps_do_not_copy_the_batch_cache(tiny_model, tiny_tokenizer):
    eng = Engine(tiny_model, tiny_tokenizer, max_batch_size=8)
    reqs = [eng.submit(tiny_tokenizer(p)["input_ids"], SamplingParams(max_tokens=20, ignore_eos=True))
            for p in PROMPTS[:3]]
    eng.step()  # all three join
    layer = eng._cache.cache.layers[0]
    assert type(layer) is C.grow_layer_class()
    eng.step()  # the first decode allocates the spare columns
    ptrs = set()
    for _ in range(10):
        eng.step()
        ptrs.add(layer._kb.data_ptr())
        assert layer.keys.shape[-2] == eng._cache.mask.shape[1]  # the view ends at the batch's length
    assert len(ptrs) == 1
    while not all(r.done.is_set() for r in reqs):
        eng.step()


def test_tokens_equal_with_and_without_spare_columns(tiny_model, tiny_tokenizer, monkeypatch):
    """Rows joining and leaving mid-decode (width 3 < 6 requests: extend and select on grown buffers): the same
    greedy tokens whether every step must reallocate (1 spare column) or writes in place."""
    items = [(tiny_tokenizer(p)["input_ids"], SamplingParams(max_tokens=6 + 4 * (i % 3), ignore_eos=True))
             for i, p in enumerate(PROMPTS)]
    runs = []
    for room in (1, 64):
        monkeypatch.setattr(C, "HEADROOM", room)
        out = Engine(tiny_model, tiny_tokenizer, max_batch_size=3).generate_many(items)
        runs.append([o.outputs[0].token_ids for o in out])
    assert runs[0] == runs[1] and [len(t) for t in runs[1]] == [6, 10, 14, 6, 10, 14]
