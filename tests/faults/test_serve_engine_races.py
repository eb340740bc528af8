"""Issue #24 item 6: ``Engine.generate_many`` from several threads while the engine thread runs (the
shared-prefix state was engine-global: one call could clear or replace another's prefix cache), and the
shared-prefix path on sliding-window models (padding between prefix and suffix counts in the window)."""

from __future__ import annotations

import threading
import time

import pytest

from instructkit.lm.engine import Engine
from instructkit.lm.sampling import SamplingParams

WORDS = "the a of to and in is it you that he was for on are with as his they be at one have this".split()


def _kshot(tok, seed: int, n_shots: int):
    import random
    rng = random.Random(seed)
    shots = " ".join(" ".join(rng.choices(WORDS, k=12)) + " answer: yes." for _ in range(n_shots))
    return [(tok(shots + " " + " ".join(rng.choices(WORDS, k=rng.randint(1, 6))))["input_ids"],
             SamplingParams(max_tokens=8)) for _ in range(4)]


def test_concurrent_generate_many_with_the_engine_thread(tiny_tokenizer, monkeypatch):
    from instructkit.lm import prefix
    from instructkit.models import make_tiny_model

    tok = tiny_tokenizer
    model = make_tiny_model(tok)
    calls = [_kshot(tok, s, n) for s, n in ((1, 2), (2, 3))]  # two callers, different prefixes
    ref = [[o.outputs[0].token_ids for o in Engine(model, tok, prefix_min_tokens=0).generate_many(c)] for c in calls]
    real = prefix.prefix_cache

    def slow_prefix_cache(*a, **kw):  # widen the window in which another caller changes engine state
        time.sleep(0.3)
        return real(*a, **kw)
    monkeypatch.setattr(prefix, "prefix_cache", slow_prefix_cache)
    eng = Engine(model, tok, prefix_min_tokens=16).start()
    got: dict[int, list] = {}
    errors: list[BaseException] = []

    def run(k: int) -> None:
        try:
            time.sleep(0.1 * k)
            got[k] = [[c.finish_reason for c in o.outputs] + [o.outputs[0].token_ids]
                      for o in eng.generate_many(calls[k])]
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
    try:
        threads = [threading.Thread(target=run, args=(k,)) for k in range(len(calls))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    finally:
        eng.stop()
    assert not errors, errors
    for k in range(len(calls)):
        assert [g[0] for g in got[k]] == ["length"] * 4, got[k]
        assert [g[1] for g in got[k]] == ref[k]
    assert eng.stats["prefix_tokens_reused"] > 0 and eng.load == 0


@pytest.mark.parametrize("window", [6, 24])
def test_shared_prefix_on_a_sliding_window_model(tiny_tokenizer, window):
    import torch
    from transformers import MistralConfig, MistralForCausalLM

    tok = tiny_tokenizer
    torch.manual_seed(0)
    cfg = MistralConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                        sliding_window=window, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id,
                        attn_implementation="sdpa")
    model = MistralForCausalLM(cfg).eval()
    items = _kshot(tok, 5, 2)  # suffixes of different lengths: padding between prefix and suffix
    assert len({len(ids) for ids, _ in items}) > 1
    off = Engine(model, tok, prefix_min_tokens=0).generate_many(items)
    eng = Engine(model, tok, prefix_min_tokens=8)
    on = eng.generate_many(items)
    assert [o.outputs[0].token_ids for o in on] == [o.outputs[0].token_ids for o in off]
