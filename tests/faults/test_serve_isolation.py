"""Issue #24 item 1: one bad request must never fail another.

Token ids are range-checked (400, ``param: prompt``) in the route and in ``Engine.submit``; and when a
forward does raise - at prefill or at a decode step - only the offending request fails, the other in-flight
requests complete with exactly the tokens they get without it, and the engine keeps serving.
"""

from __future__ import annotations

import httpx
import pytest

from instructkit.lm.engine import Engine
from instructkit.lm.sampling import SamplingParams
from serve_fault_helpers import headers, start_server, wait_idle

BAD_IDS = [[999999999], [-5], [2**70], [5, 1024]]
PROMPTS = ["the a of to", "Write a review of the movie", "sum plus minus", "one two three four five six",
           "is it true that the answer", "yes"]


@pytest.fixture(scope="module")
def srv(tiny_tokenizer):
    from instructkit.models import make_tiny_model
    s = start_server(Engine(make_tiny_model(tiny_tokenizer), tiny_tokenizer, max_batch_size=8), tiny_tokenizer)
    yield s
    s.close()


@pytest.mark.parametrize("bad", BAD_IDS)
def test_out_of_range_token_ids_are_400_and_others_complete(srv, bad):
    body = {"model": "tiny", "prompt": "the a of", "max_tokens": 40, "temperature": 0}
    with httpx.Client(timeout=60, headers=headers()) as c:
        with c.stream("POST", f"{srv.url}/completions", json=dict(body, stream=True)) as victim:
            lines = victim.iter_lines()
            first = next(lines)
            r = c.post(f"{srv.url}/completions", json=dict(body, prompt=bad))
            rest = [x for x in lines if x.startswith("data: ")]
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == "prompt" and err["type"] == "invalid_request_error" and "out of range" in err["message"]
    assert first.startswith("data: ") and rest[-1] == "data: [DONE]" and '"error"' not in "".join(rest)
    assert wait_idle(srv)["running"] == 0


@pytest.mark.parametrize("bad", BAD_IDS + [[], [1.5], [True]])
def test_engine_submit_rejects_bad_ids(tiny_model, tiny_tokenizer, bad):
    eng = Engine(tiny_model, tiny_tokenizer)
    with pytest.raises(ValueError, match="prompt"):
        eng.submit(bad, SamplingParams(max_tokens=3))
    assert eng.load == 0


def _poisoned(model, poison: int):
    """The model's forward raises whenever ``poison`` is among its input ids (a request that breaks a
    kernel, at prefill when it is in the prompt, at decode once it was generated)."""
    real = model.forward

    def forward(*a, **kw):
        if (kw["input_ids"] == poison).any():
            raise RuntimeError("simulated kernel failure on a poison row")
        return real(*a, **kw)
    model.forward = forward
    return model


def _victims(tok):
    items = []
    for k, p in enumerate(PROMPTS):
        sp = SamplingParams(max_tokens=12, temperature=0.0) if k % 2 == 0 else \
            SamplingParams(max_tokens=12, temperature=0.9, top_p=0.9, n=2, seed=100 + k)
        items.append((tok(p)["input_ids"], sp))
    return items


def test_a_raising_forward_fails_only_the_offending_requests(tiny_tokenizer):
    from instructkit.models import make_tiny_model

    tok = tiny_tokenizer
    victims = _victims(tok)
    ref = Engine(make_tiny_model(tok), tok, max_batch_size=16).generate_many(victims)
    used = {t for ids, _ in victims for t in ids} | {t for o in ref for c in o.outputs for t in c.token_ids}
    poison = next(t for t in range(5, len(tok)) if t not in used)  # no victim ever feeds it
    eng = Engine(_poisoned(make_tiny_model(tok), poison), tok, max_batch_size=16).start()
    try:
        reqs = []
        for k, (ids, p) in enumerate(victims):
            reqs.append(eng.submit(ids, p))
            if k == 1:  # poison in the prompt: its prefill raises (joins with other prompts)
                bad_prefill = eng.submit(tok("the a of")["input_ids"] + [poison], SamplingParams(max_tokens=8))
            if k == 3:  # generates the poison token first: the decode step after it raises
                bad_decode = eng.submit(tok("a")["input_ids"], SamplingParams(max_tokens=8, logit_bias={poison: 100.0}))
        for r in reqs + [bad_prefill, bad_decode]:
            assert r.done.wait(60)
        for r, want in zip(reqs, ref):
            got = r.result().outputs
            assert [c.finish_reason for c in got] == [c.finish_reason for c in want.outputs]
            assert [c.token_ids for c in got] == [c.token_ids for c in want.outputs]
        for bad in (bad_prefill, bad_decode):
            assert [c.finish_reason for c in bad.result().outputs] == ["error"]
            assert "simulated kernel failure" in bad.error
        # and it keeps serving
        after = eng.submit(victims[0][0], victims[0][1])
        assert after.done.wait(60) and after.result().outputs[0].token_ids == ref[0].outputs[0].token_ids
        assert eng.load == 0 or after.done.is_set()
    finally:
        eng.stop()
