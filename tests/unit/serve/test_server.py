"""The OpenAI-compatible server, driven by the real ``openai`` SDK against a uvicorn started here."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest

openai = pytest.importorskip("openai")

MSG = [{"role": "user", "content": "Write a review of the movie"}]


def _wait_idle(server, timeout=20.0):
    t0 = time.time()
    while server.state.engine.load and time.time() - t0 < timeout:
        time.sleep(0.05)
    return server.state.engine.load


def test_chat_non_streaming_and_streaming_agree(client):
    r = client.chat.completions.create(model="tiny", messages=MSG, max_tokens=12, temperature=0)
    c = r.choices[0]
    assert c.message.role == "assistant" and c.finish_reason == "length"
    assert r.usage.completion_tokens == 12 and r.usage.total_tokens == r.usage.prompt_tokens + 12
    chunks = list(client.chat.completions.create(model="tiny", messages=MSG, max_tokens=12, temperature=0, stream=True,
                                                 stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == c.message.content
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == "length"
    assert chunks[-1].choices == [] and chunks[-1].usage.model_dump() == r.usage.model_dump()
    # the SDK's stream accumulator rebuilds exactly the non-streamed message (its parser refuses
    # finish_reason=length, so end on a stop string taken from the reply)
    stop = c.message.content[8:11]
    kw = dict(model="tiny", messages=MSG, max_tokens=12, temperature=0, stop=[stop])
    plain = client.chat.completions.create(**kw).choices[0]
    with client.chat.completions.stream(**kw) as s:
        final = s.get_final_completion()
    assert plain.finish_reason == "stop" and plain.message.content == c.message.content[: c.message.content.find(stop)]
    assert final.choices[0].message.content == plain.message.content
    assert final.choices[0].finish_reason == "stop"


def test_greedy_server_output_equals_local_backend(client, tiny_tokenizer):
    from instructkit.lm.api import GenerateRequest
    from instructkit.lm.hf import HFModel
    from instructkit.models import make_tiny_model
    hf = HFModel(make_tiny_model(tiny_tokenizer), tiny_tokenizer, progress=False, generation="hf")
    ref = hf.generate([GenerateRequest(messages=MSG, max_new_tokens=12), GenerateRequest(prompt="the a of", max_new_tokens=8)])
    chat = client.chat.completions.create(model="tiny", messages=MSG, max_tokens=12, temperature=0)
    comp = client.completions.create(model="tiny", prompt="the a of", max_tokens=8, temperature=0)
    assert chat.choices[0].message.content == ref[0].texts[0]
    assert comp.choices[0].text == ref[1].texts[0]


def test_completions_stop_n_logprobs_echo(client):
    base = client.completions.create(model="tiny", prompt="the a of", max_tokens=16, temperature=0).choices[0].text
    stop = base[6:9]
    r = client.completions.create(model="tiny", prompt="the a of", max_tokens=16, temperature=0, stop=[stop], n=3)
    assert [c.index for c in r.choices] == [0, 1, 2]
    assert all(c.text == base[: base.find(stop)] and c.finish_reason == "stop" for c in r.choices)
    s = client.completions.create(model="tiny", prompt="the a of", max_tokens=5, temperature=1.0, n=2, seed=3,
                                  logprobs=2)
    assert all(len(c.logprobs.tokens) == 5 and len(c.logprobs.top_logprobs[0]) == 2 for c in s.choices)
    e = client.completions.create(model="tiny", prompt="the a of", max_tokens=0, echo=True, logprobs=1)
    lp = e.choices[0].logprobs
    assert e.choices[0].text == "the a of" and lp.token_logprobs[0] is None
    assert "".join(lp.tokens) == "the a of" and lp.text_offset[-1] == len("the a") and lp.token_logprobs[-1] < 0


def test_chat_logprobs_and_seeded_n(client):
    kw = dict(model="tiny", messages=MSG, max_tokens=6, temperature=1.0, seed=11, n=2, logprobs=True, top_logprobs=3)
    a, b = client.chat.completions.create(**kw), client.chat.completions.create(**kw)
    assert [c.message.content for c in a.choices] == [c.message.content for c in b.choices]
    assert len(a.choices[0].logprobs.content) == 6 and len(a.choices[0].logprobs.content[0].top_logprobs) == 3
    stream = list(client.chat.completions.create(**kw, stream=True))
    for i in range(2):
        txt = "".join(ch.choices[0].delta.content or "" for ch in stream if ch.choices and ch.choices[0].index == i)
        assert txt == a.choices[i].message.content


def test_adapter_selection_and_models_list(client, server):
    cards = {m.id: m for m in client.models.list().data}
    assert set(cards) == {"tiny", "ada", "bob"} and cards["ada"].parent == "tiny" and cards["tiny"].parent is None
    outs = {m: client.chat.completions.create(model=m, messages=MSG, max_tokens=10, temperature=0).choices[0].message.content
            for m in ("tiny", "ada", "bob")}
    assert len(set(outs.values())) == 3
    from instructkit.lm.sampling import SamplingParams
    ids = server.state.tokenizer(server.state.renderer.prompt_text(MSG), add_special_tokens=False)["input_ids"]
    for name in ("ada", "bob"):
        want = server.state.engine.generate_many([(ids, SamplingParams(max_tokens=10, adapter=name))])
        assert outs[name] == want[0].outputs[0].text
    assert client.models.retrieve("bob").parent == "tiny"


def _err(fn):
    with pytest.raises(openai.APIStatusError) as e:
        fn()
    return e.value


def test_error_cases_in_openai_shape(client, server):
    e = _err(lambda: client.chat.completions.create(model="nope", messages=MSG))
    assert e.status_code == 404 and e.body["code"] == "model_not_found"
    e = _err(lambda: client.chat.completions.create(model="tiny", messages=MSG, max_tokens=10**9))
    assert e.status_code == 400 and e.body["code"] == "context_length_exceeded"
    e = _err(lambda: client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "word " * 250_000}]))
    assert e.status_code == 400 and e.body["code"] == "context_length_exceeded"  # a 1 MB prompt
    e = _err(lambda: client.chat.completions.create(model="tiny", messages="hello"))
    assert e.status_code == 400 and e.body["param"] == "messages"
    e = _err(lambda: client.chat.completions.create(model="tiny", messages=MSG, temperature="hot"))
    assert e.status_code == 400 and e.body["param"] == "temperature"
    e = _err(lambda: client.chat.completions.create(model="tiny", messages=MSG, extra_body={"bogus": 1}))
    assert e.status_code == 400 and "bogus" in e.body["message"]
    e = _err(lambda: client.chat.completions.create(model="tiny", messages=MSG, max_tokens=-1))
    assert e.status_code == 400 and e.body["param"] == "max_tokens"
    e = _err(lambda: client.chat.completions.create(model="tiny", messages=MSG, n=2, stop=["a", "b", "c", "d", "e"]))
    assert e.status_code == 400 and e.body["param"] == "stop"
    e = _err(lambda: client.chat.completions.create(model="tiny", messages=MSG, logit_bias={"999999": 5}))
    assert e.status_code == 400 and e.body["param"] == "logit_bias"
    h = {"Authorization": "Bearer test-key-123", "Content-Type": "application/json"}
    r = httpx.post(f"{server.url}/chat/completions", content=b'{"model": "tiny", "messages": [', headers=h)
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    assert httpx.post(f"{server.url}/nope", json={}, headers=h).json()["error"]["message"]


def test_api_key_on_every_route_but_health(server):
    base = server.url.rsplit("/v1", 1)[0]
    assert httpx.get(f"{base}/health").json()["status"] == "ok"
    for path in ("/v1/models", "/v1/models/tiny", "/docs", "/openapi.json", "/v1/anything", "/health/../v1/models"):
        r = httpx.get(f"{base}{path}")
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key", path
        assert "test-key-123" not in r.text
    bad = openai.OpenAI(base_url=server.url, api_key="test-key-124", max_retries=0)
    assert _err(lambda: bad.models.list()).status_code == 401
    r = httpx.post(f"{server.url}/chat/completions", json={"model": "tiny", "messages": MSG})
    assert r.status_code == 401


def test_503_while_loading_and_429_when_queue_full(tiny_tokenizer):
    from instructkit.models import make_tiny_model
    from instructkit.serve.adapters import ServedModels
    from instructkit.serve.app import ServerState
    from instructkit.lm.engine import Engine
    from instructkit.serve.server import ThreadedServer, serve_engine
    state = ServerState(ServedModels("tiny"))
    srv = ThreadedServer(state).start()
    try:
        c = openai.OpenAI(base_url=srv.url, api_key="x", max_retries=0)
        e = _err(lambda: c.chat.completions.create(model="tiny", messages=MSG))
        assert e.status_code == 503 and e.response.headers["retry-after"]
        assert httpx.get(srv.url.replace("/v1", "/health")).status_code == 503
    finally:
        srv.close()
    srv = serve_engine(Engine(make_tiny_model(tiny_tokenizer), tiny_tokenizer, max_queue=2), tiny_tokenizer,
                       ServedModels("tiny"))
    try:
        c = openai.OpenAI(base_url=srv.url, api_key="x", max_retries=0)
        long = c.chat.completions.create(model="tiny", messages=MSG, max_tokens=3000, n=2, temperature=0, stream=True)
        next(iter(long))
        e = _err(lambda: c.chat.completions.create(model="tiny", messages=MSG, max_tokens=4))
        assert e.status_code == 429 and e.response.headers["retry-after"] == "1"
        long.close()  # the client goes away mid-stream: its slots are freed
        assert _wait_idle(srv) == 0
        assert c.chat.completions.create(model="tiny", messages=MSG, max_tokens=4).usage.completion_tokens == 4
    finally:
        srv.close()


def test_disconnect_mid_stream_frees_the_slot(server):
    h = {"Authorization": "Bearer test-key-123"}
    body = {"model": "tiny", "messages": MSG, "max_tokens": 3000, "stream": True}
    with httpx.stream("POST", f"{server.url}/chat/completions", json=body, headers=h, timeout=30) as r:
        lines = r.iter_lines()
        head = [next(lines) for _ in range(5)]
        assert all(x.startswith("data: ") for x in head[::2]), head
        assert server.state.engine.load >= 1, head
    assert _wait_idle(server) == 0


def test_error_during_stream_is_raised_by_the_sdk(client, server, monkeypatch):
    eng = server.state.engine._batch
    real = eng._decode_forward
    calls = {"n": 0}

    def flaky():
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("simulated device failure")
        return real()
    monkeypatch.setattr(eng, "_decode_forward", flaky)
    with pytest.raises(openai.APIError, match="simulated device failure"):
        for _ in client.chat.completions.create(model="tiny", messages=MSG, max_tokens=50, stream=True):
            pass
    monkeypatch.setattr(eng, "_decode_forward", real)
    assert client.chat.completions.create(model="tiny", messages=MSG, max_tokens=3).choices[0].finish_reason == "length"


def test_64_concurrent_requests_all_answered_while_bad_ones_fail(server):
    ac = openai.AsyncOpenAI(base_url=server.url, api_key="test-key-123", max_retries=0, timeout=120)

    async def good(i):
        if i % 2:
            r = await ac.chat.completions.create(model=["tiny", "ada", "bob"][i % 3], messages=MSG, max_tokens=4 + i % 5,
                                                 temperature=0)
            return r.usage.completion_tokens == 4 + i % 5 and r.choices[0].finish_reason == "length"
        s = await ac.chat.completions.create(model="tiny", messages=MSG, max_tokens=4 + i % 5, temperature=0, stream=True)
        fin = [ch.choices[0].finish_reason async for ch in s if ch.choices]
        return fin[-1] == "length"

    async def bad(i):
        try:
            await ac.chat.completions.create(model="tiny", messages=MSG, max_tokens=[10**9, -5][i % 2])
        except openai.BadRequestError:
            return True
        return False

    async def main():
        return await asyncio.gather(*[good(i) for i in range(64)], *[bad(i) for i in range(8)])
    res = asyncio.run(main())
    assert all(res) and len(res) == 72
    assert _wait_idle(server) == 0
