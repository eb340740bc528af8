"""Issue #24 acceptance: clients (streaming and not, the real openai SDK) keep getting exactly their
answers while a poison request (every kind of items 1 and 4) arrives every second; every poison gets a
4xx; afterwards ``/health`` is idle and RSS is back to its idle level.

The default run is short (8 clients, 8 s); the full one (32 clients, 30 s) is marked slow.
"""

from __future__ import annotations

import gc
import threading
import time

import httpx
import pytest

from instructkit.lm.engine import Engine
from serve_fault_helpers import KEY, root, rss_mb, start_server, wait_idle

openai = pytest.importorskip("openai")

MSG = [{"role": "user", "content": "Write a review of the movie"}]
POISONS = [  # (route, body) - items 1 and 4 of issue #24
    ("completions", {"prompt": [999999999]}),
    ("completions", {"prompt": [-5]}),
    ("completions", {"prompt": [2**70]}),
    ("completions", {"prompt": [[3, 4], [5, 10**6]]}),
    ("completions", {"prompt": "the a of", "logit_bias": {"²": 1}}),
    ("chat", {"messages": MSG, "logit_bias": {"٣": 5}}),
    ("chat", {"messages": MSG, "seed": 2**64 - 1, "n": 2, "temperature": 1.0}),
    ("completions", {"prompt": "the a of", "seed": 2**70, "n": 3}),
]


def _victim_call(client, k: int):
    """Request kind ``k`` (greedy: deterministic) -> (text, finish_reason)."""
    mt = 4 + k % 13
    if k % 3 == 0:  # streamed chat
        s = client.chat.completions.create(model="tiny", messages=MSG, max_tokens=mt, temperature=0, stream=True)
        text, fin = "", None
        for ch in s:
            if ch.choices:
                text += ch.choices[0].delta.content or ""
                fin = ch.choices[0].finish_reason or fin
        return text, fin
    if k % 3 == 1:  # chat
        r = client.chat.completions.create(model="tiny", messages=MSG, max_tokens=mt, temperature=0)
        return r.choices[0].message.content, r.choices[0].finish_reason
    r = client.completions.create(model="tiny", prompt="one two three four", max_tokens=mt, temperature=0,
                                  stream=bool(k % 2))
    if k % 2:
        parts = list(r)
        return "".join(p.choices[0].text for p in parts if p.choices), [p for p in parts if p.choices][-1].choices[0].finish_reason
    return r.choices[0].text, r.choices[0].finish_reason


def run_load(clients: int, seconds: float, tiny_tokenizer) -> dict:
    from instructkit.models import make_tiny_model

    srv = start_server(Engine(make_tiny_model(tiny_tokenizer), tiny_tokenizer, max_batch_size=32), tiny_tokenizer)
    try:
        mk = lambda: openai.OpenAI(base_url=srv.url, api_key=KEY, max_retries=0, timeout=120)  # noqa: E731
        c0 = mk()
        ref = {k: _victim_call(c0, k) for k in range(39)}  # each kind once, alone: the expected answers
        for k in range(39):  # warm-up under concurrency, then the idle level
            _victim_call(c0, k)
        gc.collect()
        assert wait_idle(srv)["running"] == 0
        rss_idle = rss_mb()
        stop = threading.Event()
        stats = {"ok": 0, "failed": [], "poison": [], "wrong": []}
        lock = threading.Lock()

        def victim(i: int) -> None:
            client, k = mk(), i
            while not stop.is_set():
                k = (k + 7) % 39
                try:
                    got = _victim_call(client, k)
                except Exception as e:  # noqa: BLE001 - any failure of a victim is what this test counts
                    with lock:
                        stats["failed"].append(f"{type(e).__name__}: {e}"[:200])
                    continue
                with lock:
                    stats["ok"] += 1
                    if got != ref[k]:
                        stats["wrong"].append((k, got, ref[k]))

        def poison(j: int) -> None:
            route, body = POISONS[j % len(POISONS)]
            path = "chat/completions" if route == "chat" else "completions"
            with httpx.Client(headers={"Authorization": f"Bearer {KEY}"}, timeout=60) as h:
                r = h.post(f"{srv.url}/{path}", json=dict({"model": "tiny", "max_tokens": 8}, **body))
            with lock:
                stats["poison"].append((j % len(POISONS), r.status_code,
                                        r.json()["error"]["param"] if r.status_code >= 400 else None))

        def poisoner() -> None:  # one poison per second on the clock, whatever the answers take
            sent, t_next = [], time.time() + 0.2
            while not stop.wait(max(0.0, t_next - time.time())):
                sent.append(threading.Thread(target=poison, args=(len(sent),)))
                sent[-1].start()
                t_next += 1.0
            for t in sent:
                t.join(120)
        threads = [threading.Thread(target=victim, args=(i,)) for i in range(clients)]
        threads.append(threading.Thread(target=poisoner))
        t0 = time.time()
        for t in threads:
            t.start()
        time.sleep(seconds)
        stop.set()
        for t in threads:
            t.join(180)
        stats["seconds"] = time.time() - t0
        stats["health"] = wait_idle(srv)
        gc.collect()
        time.sleep(0.5)
        stats["rss_idle_mb"], stats["rss_after_mb"] = rss_idle, rss_mb()
        stats["health_ms"] = min(_ms(srv) for _ in range(5))
        stats["engine"] = dict(srv.state.engine.stats)
        return stats
    finally:
        srv.close()


def _ms(srv) -> float:
    t0 = time.perf_counter()
    httpx.get(f"{root(srv)}/health", timeout=5)
    return (time.perf_counter() - t0) * 1000


def _check(stats: dict, seconds: float) -> None:
    print({k: v for k, v in stats.items() if k not in ("poison",)}, "poisons:", len(stats["poison"]))
    assert stats["failed"] == [], stats["failed"][:5]
    assert stats["wrong"] == [], stats["wrong"][:3]
    assert stats["ok"] > 0
    assert len(stats["poison"]) >= int(seconds) - 1
    assert all(400 <= code < 500 for _, code, _ in stats["poison"]), stats["poison"]
    assert {kind for kind, _, _ in stats["poison"]} == set(range(min(len(POISONS), len(stats["poison"]))))
    h = stats["health"]
    assert h["status"] == "ok" and h["running"] == h["waiting"] == h["admitting"] == 0, h
    assert stats["rss_after_mb"] < stats["rss_idle_mb"] + 150, (stats["rss_idle_mb"], stats["rss_after_mb"])


@pytest.mark.timeout(300)
def test_poison_every_second_short(tiny_tokenizer):
    _check(run_load(8, 8.0, tiny_tokenizer), 8.0)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_poison_every_second_32_clients_30s(tiny_tokenizer):
    _check(run_load(32, 30.0, tiny_tokenizer), 30.0)
