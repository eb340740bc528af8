"""Issue #24 item 18 (serve/lm parts): Ctrl-C during a chat reply returns to the prompt with the history
kept; the engine and the scorer use transformers' cache API (no ``past_key_values`` FutureWarning)."""

from __future__ import annotations

import warnings

import pytest

from instructkit.lm.engine import Engine
from instructkit.lm.sampling import SamplingParams


def test_ctrl_c_during_a_reply_stops_it_and_keeps_the_history():
    from instructkit.serve.chat_cli import chat_loop

    lines = iter(["first", "second", "third", "/exit"])
    closed = []

    def send(msgs):
        def gen():
            try:
                yield "partial "
                if msgs[-1]["content"] == "second":
                    raise KeyboardInterrupt  # the user presses Ctrl-C while the reply streams
                yield "answer"
            finally:
                closed.append(msgs[-1]["content"])  # the stream (HTTP request) is closed
        return gen()
    out: list[str] = []
    try:
        hist = chat_loop(send, read=lambda _p: next(lines), write=out.append)
    except KeyboardInterrupt:
        pytest.fail("Ctrl-C during a reply ended the chat (the history is lost)")
    assert [m["content"] for m in hist] == ["first", "partial answer", "second", "partial ", "third", "partial answer"]
    assert "(reply stopped)" in "".join(out) and closed == ["first", "second", "third"]


def test_engine_and_scorer_raise_no_past_key_values_warning(tiny_model, tiny_tokenizer):
    from instructkit.lm.api import LoglikelihoodRequest
    from instructkit.lm.hf import HFModel

    ids = tiny_tokenizer("the a of to and in is it you that he was for on are with as")["input_ids"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        eng = Engine(tiny_model, tiny_tokenizer, prefix_min_tokens=4)
        eng.generate_many([(ids + [5], SamplingParams(max_tokens=4)), (ids + [7, 8], SamplingParams(max_tokens=4))])
        lm = HFModel(tiny_model, tiny_tokenizer, progress=False, prefix_min_tokens=4)
        ctx = "the a of to and in is it you that he was for on are with as"
        lm.loglikelihood([LoglikelihoodRequest(ctx + " one", " yes"), LoglikelihoodRequest(ctx + " two", " no")])
    bad = [str(w.message) for w in caught if "past_key_values" in str(w.message)]
    assert not bad, bad
    assert eng.stats["prefix_tokens_reused"] > 0 and lm.stats["ll_prefix_tokens_reused"] > 0
