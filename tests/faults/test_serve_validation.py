"""Issue #24 item 4: malformed sampling parameters are 400s with the right ``param``, never a 500, a
dropped connection or an orphan sequence decoding for nobody."""

from __future__ import annotations

import httpx
import pytest

from instructkit.lm.engine import Engine
from instructkit.lm.sampling import SamplingParams
from serve_fault_helpers import headers, start_server, wait_idle


@pytest.fixture(scope="module")
def srv(tiny_tokenizer):
    from instructkit.models import make_tiny_model
    s = start_server(Engine(make_tiny_model(tiny_tokenizer), tiny_tokenizer), tiny_tokenizer)
    yield s
    s.close()


@pytest.mark.parametrize("extra,param", [
    ({"logit_bias": {"²": 1}}, "logit_bias"),
    ({"logit_bias": {"١٢": 1}}, "logit_bias"),        # Arabic-Indic digits: isdigit() too
    ({"logit_bias": {"5": 1e300}}, "logit_bias"),
    ({"seed": 2**64 - 1, "n": 2}, "seed"),
    ({"seed": 2**64, "n": 3}, "seed"),
    ({"seed": -(2**63) - 1}, "seed"),
])
@pytest.mark.parametrize("route", ["completions", "chat/completions"])
def test_bad_sampling_parameters_are_400_and_leave_nothing_queued(srv, extra, param, route):
    body = dict({"model": "tiny", "max_tokens": 5}, **extra)
    body.update({"prompt": "the a of"} if route == "completions" else
                {"messages": [{"role": "user", "content": "hi"}]})
    with httpx.Client(headers=headers(), timeout=30) as c:
        r = c.post(f"{srv.url}/{route}", json=body)
        assert r.status_code == 400, r.text
        assert r.json()["error"]["param"] == param and r.json()["error"]["type"] == "invalid_request_error"
        # the keep-alive connection still works
        ok = c.post(f"{srv.url}/completions", json={"model": "tiny", "prompt": "a", "max_tokens": 2})
        assert ok.status_code == 200
    st = wait_idle(srv, timeout=5)
    assert st["running"] == st["waiting"] == st["admitting"] == 0  # no orphan


def test_engine_seeds_near_2_64_with_n_choices(tiny_model, tiny_tokenizer):
    eng = Engine(tiny_model, tiny_tokenizer)
    ids = tiny_tokenizer("the a of")["input_ids"]
    (out,) = eng.generate_many([(ids, SamplingParams(max_tokens=4, temperature=1.0, n=3, seed=2**64 - 1))])
    assert len(out.outputs) == 3 and eng.load == 0
    with pytest.raises(ValueError, match="logit_bias"):
        eng.submit(ids, SamplingParams(max_tokens=4, logit_bias={10**9: 1.0}))
    assert eng.load == 0
