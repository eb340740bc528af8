"""Issue #26 (decoding): streamed text is decoded incrementally (no re-decoding from the start at every
step) and equals the final text, also when a character's bytes are split across byte-level tokens."""

from __future__ import annotations

import pytest

from instructkit.lm.detok import Detokenizer, StopChecker
from instructkit.lm.engine import Engine
from instructkit.lm.sampling import SamplingParams

TEXTS = ["héllo wörld", "こんにちは世界", "emoji 😀👍🏽 done", "naïve café – “quotes” ½", "mixed 日本 and ascii 123"]


@pytest.mark.parametrize("text", TEXTS)
def test_incremental_text_equals_full_decode_on_split_characters(tiny_tokenizer, text):
    tok = tiny_tokenizer
    ids = tok(text, add_special_tokens=False)["input_ids"]
    pieces = [tok.convert_ids_to_tokens(i) for i in ids]
    assert len(ids) > len(text.split())  # byte-level: multi-byte characters span several tokens
    sc = StopChecker(tok, [])
    deltas = [sc.feed(ids[:k])[0] for k in range(1, len(ids) + 1)] + [sc.finish(ids)]
    assert "".join(deltas) == tok.decode(ids) == text, pieces
    assert not any("\ufffd" in d for d in deltas)  # never half a character in a chunk


def test_stop_string_split_across_multibyte_tokens(tiny_tokenizer):
    tok = tiny_tokenizer
    ids = tok("abc 日本語 xyz", add_special_tokens=False)["input_ids"]
    sc = StopChecker(tok, ["本語"])
    out, stopped = "", False
    for k in range(1, len(ids) + 1):
        d, stopped = sc.feed(ids[:k])
        out += d
        if stopped:
            break
    assert stopped and out == "abc 日" == sc.text


def test_decoding_work_is_linear_not_quadratic(tiny_tokenizer):
    class Counting:
        def __init__(self, tok):
            self.tok, self.decoded = tok, 0

        def decode(self, ids, **kw):
            self.decoded += len(ids)
            return self.tok.decode(ids, **kw)
    c = Counting(tiny_tokenizer)
    ids = tiny_tokenizer(" ".join(["the a of to"] * 100), add_special_tokens=False)["input_ids"]
    d = Detokenizer(c)
    text = "".join(d.step(ids[:k]) for k in range(1, len(ids) + 1)) + d.step(ids, final=True)
    assert text == tiny_tokenizer.decode(ids)
    assert c.decoded < 6 * len(ids), (c.decoded, len(ids))  # re-decoding from the start: ~len**2 / 2


def test_engine_stream_equals_final_text_with_random_bytes(tiny_model, tiny_tokenizer):
    # temperature 2 over a byte-level vocabulary: many samples end inside a UTF-8 character
    eng = Engine(tiny_model, tiny_tokenizer)
    ids = tiny_tokenizer("the a of")["input_ids"]
    p = SamplingParams(max_tokens=60, temperature=2.0, n=4, seed=3, stop=["zz"])
    chunks: dict[int, list[str]] = {i: [] for i in range(4)}
    finals = {}
    for ev in eng.stream(ids, p):
        chunks[ev.index].append(ev.text)
        if ev.finish_reason:
            finals[ev.index] = ev.finish_reason
    assert sorted(finals) == [0, 1, 2, 3] and eng.load == 0
    # the same request again (seeded): its completions' final texts
    (out,) = eng.generate_many([(ids, p)])
    eos = tiny_tokenizer.eos_token_id
    for i, c in enumerate(out.outputs):
        assert "".join(chunks[i]) == c.text
        body = c.token_ids[:-1] if c.token_ids[-1] == eos else c.token_ids
        full = tiny_tokenizer.decode(body, skip_special_tokens=True)  # the whole text, decoded at once
        assert full == c.text or (full.startswith(c.text) and full[len(c.text):].startswith("zz")), (full, c.text)


def test_sampling_runs_where_the_logits_are():
    """The choice is made on the logits' device: only ids and requested log-probs come back as lists."""
    import torch

    from instructkit.lm.sampling import make_generator, next_tokens
    logits = torch.randn(3, 50)
    ps = [SamplingParams(), SamplingParams(temperature=1.0, top_p=0.5), SamplingParams(logprobs=True, top_logprobs=3)]
    toks, lps = next_tokens(logits, ps, [[], [], []], [make_generator(1), make_generator(2), make_generator(3)])
    assert toks[0] == int(logits[0].argmax()) and toks[2] == int(logits[2].argmax())
    assert lps[0] is None and lps[1] is None and len(lps[2].top) == 3
    assert abs(lps[2].logprob - float(torch.log_softmax(logits[2], -1)[toks[2]])) < 1e-6
