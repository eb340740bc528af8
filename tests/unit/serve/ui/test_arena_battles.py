"""Battles over HTTP: names hidden until the one vote, both sides streamed, bad and replayed votes refused,
every bound enforced; the vote record is what ``eval leaderboard`` reads."""

from __future__ import annotations

import json
import threading

import httpx
import pytest

from tests.unit.serve.ui.conftest import login, sse

EVENT_KEYS = {"side", "text", "finish", "error", "done", "ok", "turn", "max_turns"}


def _turn(c: httpx.Client, bid: str, prompt: str = "hello there", **kw) -> list[dict]:
    with c.stream("POST", f"/ui/api/battles/{bid}/turn", json={"prompt": prompt, "max_tokens": 6, **kw}) as r:
        assert r.status_code == 200, r.read()
        return sse(r)


def test_battle_multi_turn_vote_reveal_and_record(arena):
    from instructkit.judging.ratings import load_battles
    c = login(arena.base)
    created = c.post("/ui/api/battles", json={})
    assert created.status_code == 200 and set(created.json()) == {"battle_id", "max_turns"}  # no model names
    bid = created.json()["battle_id"]
    texts = []
    for turn in (1, 2):
        evs = _turn(c, bid, prompt=f"turn {turn}", temperature=0.0)
        assert all(set(e) <= EVENT_KEYS for e in evs)  # nothing in the stream names a model
        assert {e["side"] for e in evs if "text" in e} == {0, 1}  # both panes streamed
        assert sorted(e["side"] for e in evs if "finish" in e) == [0, 1]
        assert evs[-1] == {"done": True, "ok": True, "turn": turn, "max_turns": 8}
        texts.append(["".join(e.get("text", "") for e in evs if e.get("side") == s) for s in (0, 1)])
    n0 = len(arena.arena.votes)
    v = c.post(f"/ui/api/battles/{bid}/vote", json={"vote": "b"}).json()
    assert v["winner"] == "model_b" and v["votes"] == n0 + 1
    assert v["model_a"] != v["model_b"] and {v["model_a"], v["model_b"]} <= {"tiny", "ada", "bob"}
    rec = json.loads(arena.arena.votes.path.read_text().splitlines()[-1])
    assert rec["battle_id"] == bid and rec["vote"] == "rightvote" and rec["turn"] == 2 and rec["anony"] is True
    assert (rec["model_a"], rec["model_b"]) == (v["model_a"], v["model_b"])
    assert [m["content"] for m in rec["conversation_a"]] == ["turn 1", texts[0][0], "turn 2", texts[1][0]]
    assert [m["content"] for m in rec["conversation_b"]] == ["turn 1", texts[0][1], "turn 2", texts[1][1]]
    assert len(rec["session"]) == 16 and rec["params"]["temperature"] == 0.0 and rec["time"].endswith("+00:00")
    # greedy: each side's text is what its (revealed) model says to the same conversation
    direct = httpx.post(arena.url + "/chat/completions", headers={"Authorization": "Bearer arena-key-123"},
                        json={"model": v["model_a"], "messages": rec["conversation_a"][:1], "max_tokens": 6,
                              "temperature": 0}).json()
    assert direct["choices"][0]["message"]["content"] == texts[0][0]
    assert load_battles(arena.arena.votes.path)[-1]["battle_id"] == bid
    # the battle is over: no more turns, and a replayed vote is refused
    r = c.post(f"/ui/api/battles/{bid}/vote", json={"vote": "a"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "already_voted"
    assert c.post(f"/ui/api/battles/{bid}/turn", json={"prompt": "x"}).status_code == 409
    assert len(arena.arena.votes) == n0 + 1


MALFORMED = [({"vote": "A"}, "invalid_value"), ({"vote": "left"}, "invalid_value"), ({}, "invalid_request"),
             ({"vote": "a", "model": "tiny"}, "invalid_request"), ({"vote": ["a"]}, "invalid_request"),
             ("not json", "invalid_request"), ('{"vote": "a"', "invalid_request")]


def test_malformed_votes_are_refused(arena):
    c = login(arena.base)
    bid = c.post("/ui/api/battles", json={}).json()["battle_id"]
    _turn(c, bid)
    n0 = len(arena.arena.votes)
    for body, code in MALFORMED:
        r = (c.post(f"/ui/api/battles/{bid}/vote", content=body, headers={"Content-Type": "application/json"})
             if isinstance(body, str) else c.post(f"/ui/api/battles/{bid}/vote", json=body))
        assert r.status_code == 400 and r.json()["error"]["code"] == code, body
    assert len(arena.arena.votes) == n0
    assert c.post(f"/ui/api/battles/{bid}/vote", json={"vote": "tie"}).status_code == 200  # still votable once


def test_vote_needs_a_turn_an_owner_and_a_real_id(arena):
    c, other = login(arena.base), login(arena.base)
    bid = c.post("/ui/api/battles", json={}).json()["battle_id"]
    r = c.post(f"/ui/api/battles/{bid}/vote", json={"vote": "a"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "no_turns"
    _turn(c, bid)
    for who, b in ((other, bid), (c, bid[:-1] + ("A" if bid[-1] != "A" else "B")), (c, "../../etc")):
        assert who.post(f"/ui/api/battles/{b}/vote", json={"vote": "a"}).status_code == 404
    assert other.post(f"/ui/api/battles/{bid}/turn", json={"prompt": "x"}).status_code == 404


def test_concurrent_votes_on_one_battle_count_once(arena):
    c = login(arena.base)
    bid = c.post("/ui/api/battles", json={}).json()["battle_id"]
    _turn(c, bid)
    n0, codes, barrier = len(arena.arena.votes), [], threading.Barrier(6)

    def vote(v: str) -> None:
        with httpx.Client(base_url=arena.base, cookies=c.cookies, headers={"X-Arena": "1"}) as cl:
            barrier.wait()
            codes.append(cl.post(f"/ui/api/battles/{bid}/vote", json={"vote": v}).status_code)
    ts = [threading.Thread(target=vote, args=(v,)) for v in ["a", "b", "tie", "bothbad", "a", "b"]]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert sorted(codes) == [200] + [409] * 5 and len(arena.arena.votes) == n0 + 1
    assert sum(json.loads(x)["battle_id"] == bid for x in arena.arena.votes.path.read_text().splitlines()) == 1


def test_bounds_prompt_tokens_and_chat(arena):
    c = login(arena.base)
    bid = c.post("/ui/api/battles", json={}).json()["battle_id"]
    r = c.post(f"/ui/api/battles/{bid}/turn", json={"prompt": "x", "max_tokens": 513})
    assert r.status_code == 400 and r.json()["error"]["param"] == "max_tokens"
    r = c.post(f"/ui/api/battles/{bid}/turn", json={"prompt": "x" * 8001})
    assert r.status_code == 400 and r.json()["error"]["code"] == "too_long"
    assert c.post(f"/ui/api/battles/{bid}/turn", json={"prompt": ""}).status_code == 400
    assert c.post(f"/ui/api/battles/{bid}/turn", json={"prompt": "x", "temperature": 3}).status_code == 400
    assert c.post(f"/ui/api/battles/{bid}/turn", json={"prompt": "x", "stream": False}).status_code == 400
    chat = {"model": "ada", "messages": [{"role": "user", "content": "x"}]}
    assert c.post("/ui/api/chat", json={**chat, "max_tokens": 9999}).status_code == 400
    assert c.post("/ui/api/chat", json={**chat, "model": "ghost"}).status_code == 404
    too_many = [{"role": r, "content": "x"} for _ in range(9) for r in ("user", "assistant")][:-1]
    assert c.post("/ui/api/chat", json={**chat, "messages": too_many}).json()["error"]["code"] == "turn_limit"
    assert c.post("/ui/api/chat", json={**chat, "messages": [{"role": "tool", "content": "x"}]}).status_code == 400
    with c.stream("POST", "/ui/api/chat", json={**chat, "max_tokens": 5, "messages": [
            {"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]}) as r:
        evs = sse(r)
    assert evs[-1] == {"done": True} and evs[-2] == {"side": 0, "finish": "length"}
    assert sum("text" in e for e in evs) >= 2  # streamed in pieces


def test_battles_store_limits():
    """The store's own bounds, without a server: turns, live battles, per-session eviction, busy turns."""
    import random

    from instructkit.serve.protocol import APIError
    from instructkit.serve.ui.battles import Battles
    bs = Battles(max_battles=3, per_session=2, max_turns=2, rng=random.Random(0))
    models = ["m1", "m2", "m3"]
    with pytest.raises(APIError, match="at least two"):
        bs.new("s", ["m1"])
    b1 = bs.new("s1", models)
    b2 = bs.new("s1", models)
    b3 = bs.new("s1", models)  # s1's oldest idle battle makes room
    assert b1.id not in bs.live and {b2.id, b3.id} <= set(bs.live)
    bs.new("s2", models)
    with pytest.raises(APIError) as e:
        bs.new("s3", models)
    assert e.value.status == 429
    bs.begin_turn(b2)
    with pytest.raises(APIError, match="still answering"):
        bs.begin_turn(b2)
    with pytest.raises(APIError, match="both models"):
        bs.decide(b2, "a")
    bs.end_turn(b2, "p", None, {})  # a failed turn leaves no trace
    assert b2.turns == 0 and b2.convs == ([], [])
    for _ in range(2):
        bs.begin_turn(b2)
        bs.end_turn(b2, "p", ["ra", "rb"], {})
    with pytest.raises(APIError, match="turn limit"):
        bs.begin_turn(b2)
    assert b2.convs[0][-1] == {"role": "assistant", "content": "ra"} and b2.convs[1][-1]["content"] == "rb"


def test_pairs_are_drawn_uniformly():
    import random
    from collections import Counter

    from instructkit.serve.ui.battles import Battles
    bs = Battles(max_battles=10_000, per_session=10_000, rng=random.Random(1))
    counts = Counter(bs.new("s", ["m1", "m2", "m3"]).models for _ in range(1200))
    assert len(counts) == 6 and all(a != b for a, b in counts) and min(counts.values()) > 150
