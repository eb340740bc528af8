"""The running batch's KV cache changes in place (issue #26): a decode step writes its column into spare
columns, a leaving row is filled by the rows below it, a joining row takes a spare row - the same tensors
as concatenating / index-selecting the whole cache (what transformers' DynamicLayer and the batch did), the
same tokens, without copying the cache."""

from __future__ import annotations

import torch

from instructkit.lm import grow as G
from instructkit.lm.engine import Engine
from instructkit.lm.sampling import SamplingParams

PROMPTS = ["the a of to", "Write a review of the movie", "sum plus minus", "yes",
           "one two three four five six seven eight nine ten hundred", "is it true that the answer"]


def _rand(b, t):
    return torch.randn(b, 2, t, 4)


def _left(t, L):
    return torch.nn.functional.pad(t, (0, 0, L - t.shape[-2], 0))


def test_slab_equals_cat_and_index_select_without_copies():
    s, ref = G.Slab(), None
    first = _rand(3, 5)
    s.add_rows(first, reserve=6)
    ref = first.clone()
    assert s.buf.shape == (6, 2, 5 + G.HEADROOM, 4)
    ptr = s.buf.data_ptr()
    for _ in range(4):  # decode steps: a column each, in place
        col = _rand(3, 1)
        s.append(col)
        ref = torch.cat([ref, col], 2)
    assert torch.equal(s.view(), ref) and s.buf.data_ptr() == ptr
    s.keep_rows([0, 2], first=1)  # row 1 leaves; the leading column is padding everywhere now
    ref = ref.index_select(0, torch.tensor([0, 2]))[:, :, 1:]
    assert torch.equal(s.view(), ref) and s.buf.data_ptr() == ptr
    new = _rand(2, 6)  # two rows join, shorter than the batch: right-aligned, zeros on the left
    s.add_rows(new)
    ref = torch.cat([ref, _left(new, ref.shape[-2])], 0)
    assert torch.equal(s.view(), ref) and s.buf.data_ptr() == ptr
    longer = _rand(1, 20)  # longer than the batch: the others get zero padding; one copy into a new buffer
    s.add_rows(longer)
    ref = torch.cat([_left(ref, 20), longer], 0)
    assert torch.equal(s.view(), ref) and s.buf.data_ptr() != ptr
    for _ in range(G.HEADROOM + 1):  # past the spare columns: grows, content kept
        col = _rand(5, 1)
        s.append(col)
        ref = torch.cat([ref, col], 2)
    assert torch.equal(s.view(), ref)


def test_decode_steps_and_joins_do_not_copy_the_batch_cache(tiny_model, tiny_tokenizer):
    eng = Engine(tiny_model, tiny_tokenizer, max_batch_size=8)
    ids = [tiny_tokenizer(p)["input_ids"] for p in PROMPTS]
    reqs = [eng.submit(x, SamplingParams(max_tokens=4 if k == 0 else 30, ignore_eos=True)) for k, x in enumerate(ids[:3])]
    eng.step()  # three join and decode
    layer = eng._cache.cache.layers[0]
    assert type(layer) is G.grow_layer_class()
    ptrs = set()
    for _ in range(6):  # request 0 leaves after 4 tokens
        eng.step()
        ptrs.add(layer._k.buf.data_ptr())
    reqs.append(eng.submit(ids[3], SamplingParams(max_tokens=30, ignore_eos=True)))  # joins into a spare row
    for _ in range(6):
        eng.step()
        ptrs.add(layer._k.buf.data_ptr())
        assert layer.keys.shape[:3] == (len(eng._running), 2, eng._cache.mask.shape[1])
    assert reqs[0].done.is_set() and len(eng._running) == 3 and len(ptrs) == 1
    for r in reqs:
        r.cancel()
    eng.step()


def test_tokens_equal_with_and_without_spare_columns(tiny_model, tiny_tokenizer, monkeypatch):
    """Rows joining and leaving mid-decode (width 3 < 6 requests): the same greedy tokens whether every
    step must grow the buffers (1 spare column) or writes in place, and as HF generate alone."""
    items = [(tiny_tokenizer(p)["input_ids"], SamplingParams(max_tokens=6 + 4 * (i % 3), ignore_eos=True))
             for i, p in enumerate(PROMPTS)]
    runs = []
    for room in (1, 64):
        monkeypatch.setattr(G, "HEADROOM", room)
        out = Engine(tiny_model, tiny_tokenizer, max_batch_size=3).generate_many(items)
        runs.append([o.outputs[0].token_ids for o in out])
    assert runs[0] == runs[1] and [len(t) for t in runs[1]] == [6, 10, 14, 6, 10, 14]
