"""Teacher cache (torn lines, keys), the async endpoint (Retry-After, 5xx retry, garbage, unreachable), token bucket."""

import json
import time

import httpx
import pytest

from instructkit.lm.api import GenerateRequest
from instructkit.synth.endpoint import AsyncEndpoint, EndpointError, TokenBucket, retry_after
from instructkit.synth.teacher import Teacher, request_key
from fake_teacher import FakeTeacher


def _req(i, **kw):
    return GenerateRequest(messages=[{"role": "user", "content": f"q{i}"}], seed=i, **kw)


def test_key_depends_on_prompt_sampling_and_seed_not_on_caller_key():
    base = request_key("m", _req(1))
    assert request_key("m", GenerateRequest(messages=[{"role": "user", "content": "q1"}], seed=1, key="x")) == base
    assert request_key("m", _req(2)) != base
    assert request_key("m", _req(1, temperature=0.5)) != base
    assert request_key("other", _req(1)) != base


def test_cache_survives_a_torn_last_line_and_answers_without_sending(tmp_path):
    p = tmp_path / "cache.jsonl"
    fake = FakeTeacher()
    t = Teacher(fake, p, progress=False)
    first = t.generate([_req(i) for i in range(5)])
    assert fake.calls == 5
    with p.open("a") as f:
        f.write('{"k": "abc", "texts": ["trunc')  # killed mid-write
    fake2 = FakeTeacher()
    t2 = Teacher(fake2, p, progress=False)
    assert t2.cache.torn == 1
    again = t2.generate([_req(i) for i in range(7)])
    assert fake2.calls == 2 and t2.usage["cache_hits"] == 5
    assert [r.texts for r in again[:5]] == [r.texts for r in first]
    # the torn line was terminated: the records written after it are readable
    t3 = Teacher(FakeTeacher(), p, progress=False)
    assert len(t3.cache.store) == 7


def test_teacher_timeout_is_a_counted_failure_not_a_crash(tmp_path):
    class Slow(FakeTeacher):
        def generate(self, requests):
            raise TimeoutError("teacher took too long")

    t = Teacher(Slow(), tmp_path / "c.jsonl", progress=False)
    out = t.generate([_req(0), _req(1)])
    assert out == [None, None] and t.usage["failed"] == 2
    assert "took too long" in t.report()["failure_examples"][0]


def _ok(text="hi"):
    return httpx.Response(200, json={"choices": [{"message": {"content": text}}],
                                     "usage": {"prompt_tokens": 3, "completion_tokens": 2}})


def test_endpoint_honours_retry_after_and_retries_5xx(monkeypatch):
    calls, sleeps = [], []

    def handler(request):
        calls.append(json.loads(request.content))
        if len(calls) == 1:
            return httpx.Response(429, headers={"Retry-After": "7"}, text="slow down")
        if len(calls) == 2:
            return httpx.Response(503, text="busy")
        return _ok("answer")

    import asyncio
    real_sleep = asyncio.sleep

    async def fake_sleep(s):
        sleeps.append(s)
        await real_sleep(0)

    monkeypatch.setattr("instructkit.synth.endpoint.asyncio.sleep", fake_sleep)
    ep = AsyncEndpoint("http://x", "m", transport=httpx.MockTransport(handler), backoff=0.5)
    res = ep.generate([_req(0, max_new_tokens=5, stop=["x1", "x2", "x3", "x4", "x5"])])
    assert res[0].texts == ["answer"]
    assert sleeps == [7.0, 1.0]  # Retry-After (above the 0.5 s backoff) first, then exponential backoff (0.5 * 2**1)
    assert calls[0]["seed"] == 0 and len(calls[0]["stop"]) == 4 and calls[0]["max_tokens"] == 5
    assert ep.usage["completion_tokens"] == 2 and ep.usage["retries"] == 2


def test_endpoint_garbage_is_counted_and_unreachable_is_a_clear_error(tmp_path):
    def garbage(request):
        return httpx.Response(200, text="<html>oops</html>")

    t = Teacher(AsyncEndpoint("http://x", "m", transport=httpx.MockTransport(garbage)), tmp_path / "c.jsonl",
                progress=False)
    assert t.generate([_req(0), _req(1)]) == [None, None]
    assert t.usage["failed"] == 2 and "malformed" in t.failures[0]

    def down(request):
        raise httpx.ConnectError("connection refused")

    t = Teacher(AsyncEndpoint("http://127.0.0.1:9", "m", transport=httpx.MockTransport(down), max_retries=1,
                              backoff=0.001), tmp_path / "d.jsonl", progress=False)
    with pytest.raises(EndpointError, match="unreachable.*cannot reach http://127.0.0.1:9/v1/chat/completions"):
        t.generate([_req(0)])


def test_endpoint_concurrency_limit():
    import asyncio
    state = {"now": 0, "max": 0}

    async def handler(request):
        state["now"] += 1
        state["max"] = max(state["max"], state["now"])
        await asyncio.sleep(0.01)
        state["now"] -= 1
        return _ok()

    ep = AsyncEndpoint("http://x", "m", transport=httpx.MockTransport(handler), concurrency=3)
    assert len(ep.generate([_req(i) for i in range(12)])) == 12
    assert state["max"] == 3


def test_token_bucket_limits_requests_and_tokens():
    now = [0.0]
    b = TokenBucket(rpm=2, clock=lambda: now[0])   # a full bucket: 2 requests at once, then one per 30 s
    assert b.wait_time(10) == 0 and b.wait_time(10) == 0
    assert b.wait_time(10) == pytest.approx(30.0)
    now[0] += 30.0
    assert b.wait_time(10) == 0
    t = TokenBucket(tpm=600, clock=lambda: now[0])
    assert t.wait_time(500) == 0
    assert t.wait_time(500) == pytest.approx(40.0)  # 400 tokens missing at 10 tokens/s
    assert t.wait_time(5000) == pytest.approx(50.0)  # larger than the bucket: waits for a full bucket


def test_retry_after_parsing():
    assert retry_after({"retry-after": "3"}) == 3.0
    assert retry_after({}) is None
    future = time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 30))
    assert 20 < retry_after({"retry-after": future}) <= 31
