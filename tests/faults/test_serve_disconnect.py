"""Issue #24 item 3: a client that gives up on a non-streamed request stops its generation.

(The openai SDK times out and retries twice by default: without this, each abandoned request decoded
to max_tokens three times over.)
"""

from __future__ import annotations

import time

import httpx
import pytest

from instructkit.lm.engine import Engine
from serve_fault_helpers import headers, start_server, wait_idle


@pytest.fixture(scope="module")
def srv(tiny_tokenizer):
    from instructkit.models import make_tiny_model
    s = start_server(Engine(make_tiny_model(tiny_tokenizer), tiny_tokenizer), tiny_tokenizer)
    yield s
    s.close()


@pytest.mark.parametrize("route", ["completions", "chat/completions"])
def test_client_timeout_cancels_a_non_streamed_request(srv, tiny_tokenizer, route):
    eng = srv.state.engine
    body = {"model": "tiny", "max_tokens": 3000, "temperature": 0,
            "logit_bias": {str(tiny_tokenizer.eos_token_id): -100}}  # never ends by itself
    body.update({"prompt": "the a of"} if route == "completions" else
                {"messages": [{"role": "user", "content": "hi"}]})
    before = eng.stats["generated_tokens"]
    with pytest.raises(httpx.TimeoutException):
        httpx.post(f"{srv.url}/{route}", json=body, headers=headers(), timeout=1.5)
    t0 = time.time()
    st = wait_idle(srv, timeout=5)
    assert st["running"] == st["waiting"] == 0, st
    made = eng.stats["generated_tokens"] - before
    assert made < 3000, made  # cancelled long before max_tokens
    assert time.time() - t0 < 5
