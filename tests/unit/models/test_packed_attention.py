"""``sdpa_packed`` (instructkit/models/attention.py): the numbers of ``sdpa`` on packed rows, per-example
isolation, and transformers' own path whenever a mask, a window or a cache is involved."""

import pytest
import torch

from instructkit.models.attention import NAME, _bounds, use_packed_attention
from instructkit.models.tiny import make_tiny_model, make_tiny_tokenizer


@pytest.fixture(scope="module")
def tok():
    return make_tiny_tokenizer()


def _pair(tok, **kw):
    """The same weights twice: one on sdpa, one switched to sdpa_packed."""
    torch.manual_seed(0)
    a = make_tiny_model(tok, num_heads=4, num_kv_heads=2, **kw)  # grouped-query: the enable_gqa path
    b = make_tiny_model(tok, num_heads=4, num_kv_heads=2, **kw)
    b.load_state_dict(a.state_dict())
    assert use_packed_attention(b) and b.config._attn_implementation == NAME
    return a.float(), b.float()


def _packed(lens, vocab, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (1, sum(lens)), generator=g)
    pos = torch.cat([torch.arange(n) for n in lens]).unsqueeze(0)
    return ids, pos


def test_bounds_follow_transformers_rule():
    assert _bounds(torch.tensor([0, 1, 2, 0, 1, 0, 1, 2, 3])) == [0, 3, 5, 9]
    assert _bounds(torch.tensor([0, 1, 2, 3])) == [0, 4]
    assert _bounds(torch.tensor([3, 4, 0, 1])) == [0, 2, 4]  # a row need not start at position 0


def test_packed_row_matches_sdpa_in_loss_and_gradients(tok):
    a, b = _pair(tok)
    ids, pos = _packed([7, 12, 5, 9], len(tok))
    outs = []
    for m in (a, b):
        m.zero_grad()
        logits = m(input_ids=ids, position_ids=pos, use_cache=False).logits
        loss = torch.nn.functional.cross_entropy(logits[0, :-1], ids[0, 1:])
        loss.backward()
        outs.append((logits.detach(), [p.grad.clone() for p in m.parameters()]))
    assert torch.allclose(outs[0][0], outs[1][0], atol=1e-5)
    for ga, gb in zip(outs[0][1], outs[1][1]):
        assert torch.allclose(ga, gb, atol=1e-5, rtol=1e-4)


def test_examples_in_a_row_do_not_see_each_other(tok):
    _, b = _pair(tok)
    lens = [6, 10, 4]
    ids, pos = _packed(lens, len(tok), seed=1)
    with torch.no_grad():
        packed = b(input_ids=ids, position_ids=pos, use_cache=False).logits[0]
        start = 0
        for n in lens:
            alone = b(input_ids=ids[:, start:start + n], use_cache=False).logits[0]
            assert torch.allclose(packed[start:start + n], alone, atol=1e-5)
            start += n
    # and the check can fail: plain causal attention over the row (one example) leaks across examples
    with torch.no_grad():
        leaky = b(input_ids=ids, position_ids=torch.arange(ids.shape[1]).unsqueeze(0), use_cache=False).logits[0]
    assert not torch.allclose(leaky[6:16], packed[6:16], atol=1e-3)


def test_padding_mask_and_cache_take_transformers_path(tok):
    a, b = _pair(tok)
    g = torch.Generator().manual_seed(2)
    ids = torch.randint(5, len(tok), (2, 9), generator=g)
    mask = torch.ones(2, 9, dtype=torch.long)
    mask[1, 6:] = 0  # right padding in row 2
    with torch.no_grad():
        la = a(input_ids=ids, attention_mask=mask, use_cache=False).logits
        lb = b(input_ids=ids, attention_mask=mask, use_cache=False).logits
        assert torch.allclose(la[0], lb[0], atol=1e-5) and torch.allclose(la[1, :6], lb[1, :6], atol=1e-5)
        # generation with a KV cache (queries shorter than keys) gives sdpa's tokens
        prompt = ids[:1, :5]
        ga = a.generate(prompt, max_new_tokens=6, do_sample=False, pad_token_id=tok.pad_token_id)
        gb = b.generate(prompt, max_new_tokens=6, do_sample=False, pad_token_id=tok.pad_token_id)
    assert torch.equal(ga, gb)


def test_sliding_window_keeps_the_window(tok):
    from transformers import MistralConfig, MistralForCausalLM

    cfg = MistralConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, sliding_window=4,
                        max_position_embeddings=128, attn_implementation="sdpa")
    torch.manual_seed(0)
    a = MistralForCausalLM(cfg).eval()
    b = MistralForCausalLM(cfg).eval()
    b.load_state_dict(a.state_dict())
    assert use_packed_attention(b)
    ids, pos = _packed([11, 7], len(tok), seed=3)
    with torch.no_grad():
        la = a(input_ids=ids, position_ids=pos, use_cache=False).logits
        lb = b(input_ids=ids, position_ids=pos, use_cache=False).logits
    assert torch.allclose(la, lb, atol=1e-5)


def test_only_sdpa_models_switch(tok):
    m = make_tiny_model(tok, attn_implementation="eager")
    assert not use_packed_attention(m) and m.config._attn_implementation == "eager"
