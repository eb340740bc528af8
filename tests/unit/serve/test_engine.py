"""The continuous-batching engine without a server: parity with HF generate, stops, seeds, adapters."""

from __future__ import annotations

import pytest
import torch

from instructkit.lm.engine import Engine, QueueFull
from instructkit.lm.sampling import SamplingParams, StopChecker

PROMPTS = ["the a of to", "Write a review of the movie", "sum plus minus", "yes",
           "one two three four five six seven eight nine ten hundred", "is it true that the answer"]


def test_greedy_equals_hf_generate_batched_and_not(tiny_model, tiny_tokenizer):
    from instructkit.lm.api import GenerateRequest
    from instructkit.lm.hf import HFModel
    hf = HFModel(tiny_model, tiny_tokenizer, batch_size=4, progress=False, generation="hf")
    ref = hf.generate([GenerateRequest(prompt=p, max_new_tokens=16) for p in PROMPTS])
    items = [(tiny_tokenizer(p)["input_ids"], SamplingParams(max_tokens=16)) for p in PROMPTS]
    for bs in (1, 32):  # one at a time, all at once (rows joining a running batch: the next test)
        out = Engine(tiny_model, tiny_tokenizer, max_batch_size=bs).generate_many(items)
        assert [o.outputs[0].text for o in out] == [r.texts[0] for r in ref], bs
    # token for token against HF generate on each prompt alone
    for (ids, _), o in list(zip(items, out))[:2]:
        g = tiny_model.generate(torch.tensor([ids]), max_new_tokens=16, do_sample=False,
                                eos_token_id=tiny_tokenizer.eos_token_id, pad_token_id=tiny_tokenizer.pad_token_id)
        assert g[0, len(ids):].tolist() == o.outputs[0].token_ids


def test_staggered_joins_keep_greedy_output(tiny_model, tiny_tokenizer):
    eng = Engine(tiny_model, tiny_tokenizer, max_batch_size=8)
    ids = [tiny_tokenizer(p)["input_ids"] for p in PROMPTS[:4]]
    alone = [o.outputs[0].token_ids for o in Engine(tiny_model, tiny_tokenizer, max_batch_size=1).generate_many(
        [(x, SamplingParams(max_tokens=12)) for x in ids])]
    reqs = []
    for k, x in enumerate(ids):  # a new request joins every 3 decode steps, different lengths
        reqs.append(eng.submit(x, SamplingParams(max_tokens=12 - k)))
        for _ in range(3):
            eng.step()
    while not all(r.done.is_set() for r in reqs):
        eng.step()
    for k, r in enumerate(reqs):
        assert r.outputs[0].token_ids == alone[k][: 12 - k]
        assert r.outputs[0].finish_reason == "length"
    assert eng.stats["max_batch"] > 1 and not eng._running and eng._cache.mask is None


def test_stop_strings_are_not_returned_and_never_streamed(tiny_model, tiny_tokenizer):
    eng = Engine(tiny_model, tiny_tokenizer)
    ids = tiny_tokenizer(PROMPTS[1])["input_ids"]
    full = eng.generate_many([(ids, SamplingParams(max_tokens=30))])[0].outputs[0].text
    stop = full[10:13]
    assert stop.strip() and len(stop) == 3
    events = []
    req = eng.submit(ids, SamplingParams(max_tokens=30, stop=["never-there", stop]), sink=events.append)
    while not req.done.is_set():
        eng.step()
    out = req.outputs[0]
    assert out.finish_reason == "stop" and out.text == full[: full.find(stop)]
    assert "".join(e.text for e in events) == out.text
    assert events[-1].finish_reason == "stop"


def test_stop_checker_holds_back_partial_stop():
    class Tok:
        def decode(self, ids, skip_special_tokens=True):
            return "".join(chr(i) for i in ids)
    sc = StopChecker(Tok(), ["END"])  # feed() returns the newly released text
    assert sc.feed([ord(c) for c in "abcE"]) == ("abc", False)
    assert sc.feed([ord(c) for c in "abcEN"]) == ("", False)
    assert sc.feed([ord(c) for c in "abcENX"]) == ("ENX", False)
    sc = StopChecker(Tok(), ["END"])
    assert sc.feed([ord(c) for c in "abcEND!"]) == ("abc", True)
    assert sc.text == "abc" and sc.finish([ord(c) for c in "abcEND!"]) == ""


def test_seeded_sampling_reproducible_and_n_choices_differ(tiny_model, tiny_tokenizer):
    eng = Engine(tiny_model, tiny_tokenizer)
    ids = tiny_tokenizer(PROMPTS[0])["input_ids"]
    p = SamplingParams(max_tokens=12, temperature=1.0, top_p=0.9, n=3, seed=7)
    a = eng.generate_many([(ids, p)])[0].outputs
    b = eng.generate_many([(ids, p), (ids, SamplingParams(max_tokens=5))])[0].outputs
    assert [o.token_ids for o in a] == [o.token_ids for o in b]
    assert len({tuple(o.token_ids) for o in a}) > 1


def test_eos_from_generation_config_ends_with_stop(tiny_model, tiny_tokenizer):
    ids = tiny_tokenizer(PROMPTS[0])["input_ids"]
    free = Engine(tiny_model, tiny_tokenizer).generate_many([(ids, SamplingParams(max_tokens=10))])[0].outputs[0]
    third = free.token_ids[2]
    eng = Engine(tiny_model, tiny_tokenizer, eos_token_ids=[third])
    out = eng.generate_many([(ids, SamplingParams(max_tokens=10))])[0].outputs[0]
    assert out.finish_reason == "stop" and out.token_ids == free.token_ids[:3]
    assert out.text == tiny_tokenizer.decode(free.token_ids[:2])


def test_cancel_frees_the_slot_and_queue_bound(tiny_model, tiny_tokenizer):
    eng = Engine(tiny_model, tiny_tokenizer, max_queue=2)
    ids = tiny_tokenizer(PROMPTS[0])["input_ids"]
    r = eng.submit(ids, SamplingParams(max_tokens=1000, n=2))
    with pytest.raises(QueueFull):
        eng.submit(ids, SamplingParams(max_tokens=5))
    eng.step()
    assert len(eng._running) == 2
    r.cancel()
    eng.step()
    assert not eng._running and eng.load == 0 and r.done.is_set()
    assert {o.finish_reason for o in r.outputs} == {"cancelled"}
    with pytest.raises(ValueError, match="context length"):
        eng.submit(ids, SamplingParams(max_tokens=10**6))


def test_mixed_adapter_batch_equals_merged_models(peft_tiny, tiny_tokenizer, adapter_dirs):
    from peft import PeftModel

    from instructkit.models import make_tiny_model
    ids = tiny_tokenizer(PROMPTS[4])["input_ids"]
    names = [None, "ada", "bob", "ada"]
    eng = Engine(peft_tiny, tiny_tokenizer)
    outs = eng.generate_many([(ids, SamplingParams(max_tokens=12, adapter=a, logprobs=True, top_logprobs=3))
                              for a in names])
    texts = {}
    for a, o in zip(names, outs):
        c = o.outputs[0]
        ref = make_tiny_model(tiny_tokenizer)
        if a is not None:
            ref = PeftModel.from_pretrained(ref, adapter_dirs[a]).merge_and_unload()
        with torch.no_grad():
            lp = torch.log_softmax(ref(torch.tensor([ids + c.token_ids])).logits[0].float(), -1)
        got = torch.tensor([x.logprob for x in c.logprobs])
        want = lp[len(ids) - 1: -1].gather(1, torch.tensor(c.token_ids)[:, None])[:, 0]
        assert (got - want).abs().max() < 1e-4
        g = ref.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False,
                         eos_token_id=tiny_tokenizer.eos_token_id, pad_token_id=tiny_tokenizer.pad_token_id)
        assert g[0, len(ids):].tolist() == c.token_ids
        texts.setdefault(a, set()).add(c.text)
    assert all(len(v) == 1 for v in texts.values()) and len({next(iter(v)) for v in texts.values()}) == 3
    scored = eng.score(ids, top=2, adapter="bob")
    assert scored[0].logprob is None and len(scored) == len(ids)


@pytest.mark.parametrize("bs", [1, 3, 32])
def test_shared_prompt_prefix_prefilled_once_same_tokens(tiny_model, tiny_tokenizer, bs):
    """k-shot prompts share their exemplars: generate_many prefills that prefix once and runs only the
    suffixes (padding between prefix and suffix) - greedy tokens equal the engine without reuse."""
    shots = " ".join(PROMPTS) + " answer: yes. " + " ".join(reversed(PROMPTS)) + " answer: no."
    prompts = [shots + " " + q for q in ("one", "is it true that the answer is five", "yes", "Write a review")]
    items = [(tiny_tokenizer(p)["input_ids"], SamplingParams(max_tokens=10)) for p in prompts]
    off = Engine(tiny_model, tiny_tokenizer, max_batch_size=bs, prefix_min_tokens=0).generate_many(items)
    eng = Engine(tiny_model, tiny_tokenizer, max_batch_size=bs, prefix_min_tokens=16)
    on = eng.generate_many(items)
    assert [o.outputs[0].token_ids for o in on] == [o.outputs[0].token_ids for o in off]
    assert eng.stats["prefix_tokens_reused"] >= 16 * len(items)
    assert not eng._running and eng.load == 0  # the pinned prefix belonged to the call's requests only
