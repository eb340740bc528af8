"""The vote log: fsync per vote, a torn last line moved aside (never dropped, never breaking the reader),
a failed write leaves the battle votable, and kill -9 during voting loses no acknowledged vote."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest

from instructkit.errors import DataError
from tests.unit.serve.ui.conftest import KEY, login

REC = {"model_a": "x", "model_b": "y", "winner": "model_a"}


def test_append_fsyncs_every_vote(tmp_path, monkeypatch):
    from instructkit.serve.ui import votes
    log = votes.VoteLog(tmp_path / "sub" / "v.jsonl")
    calls = []
    real = os.fsync
    monkeypatch.setattr(votes.os, "fsync", lambda fd: (calls.append(fd), real(fd)))
    for i in range(3):
        log.append({**REC, "i": i})
    assert calls == [log._fd] * 3
    assert [json.loads(x)["i"] for x in log.path.read_text().splitlines()] == [0, 1, 2] and len(log) == 3


def test_torn_tail_is_moved_aside_and_complete_lines_kept(tmp_path):
    from instructkit.serve.ui.votes import VoteLog
    p = tmp_path / "v.jsonl"
    good = "".join(json.dumps({**REC, "i": i}) + "\n" for i in range(2))
    p.write_text(good + '{"model_a": "x", "model_b": "y", "win')
    log = VoteLog(p)
    assert log.torn_bytes == len('{"model_a": "x", "model_b": "y", "win') and len(log) == 2
    assert p.read_text() == good
    assert (tmp_path / "v.jsonl.torn").read_text() == '{"model_a": "x", "model_b": "y", "win\n'
    log.append({**REC, "i": 2})
    assert [json.loads(x)["i"] for x in p.read_text().splitlines()] == [0, 1, 2]
    # a whole record lacking only its newline is kept (and given one)
    q = tmp_path / "w.jsonl"
    q.write_text(json.dumps(REC))
    assert len(VoteLog(q)) == 1 and q.read_text().endswith("\n") and not (tmp_path / "w.jsonl.torn").exists()
    # a bad line that is not the tail is not a crash artefact: a clear error naming it
    r = tmp_path / "bad.jsonl"
    r.write_text(json.dumps(REC) + "\n" + json.dumps({**REC, "winner": "A"}) + "\n")
    with pytest.raises(DataError, match=r"bad.jsonl:2: field 'winner'"):
        VoteLog(r)


def test_short_write_leaves_no_half_line(tmp_path, monkeypatch):
    from instructkit.serve.ui import votes
    log = votes.VoteLog(tmp_path / "v.jsonl")
    log.append(REC)
    real = os.write
    monkeypatch.setattr(votes.os, "write", lambda fd, data: real(fd, data[: len(data) // 2]))
    with pytest.raises(OSError, match="short write"):
        log.append({**REC, "i": 1})
    monkeypatch.setattr(votes.os, "write", real)
    log.append({**REC, "i": 2})
    assert [json.loads(x).get("i") for x in log.path.read_text().splitlines()] == [None, 2] and len(log) == 2


def test_a_vote_that_could_not_be_saved_can_be_cast_again(arena, monkeypatch):
    c = login(arena.base)
    bid = c.post("/ui/api/battles", json={}).json()["battle_id"]
    with c.stream("POST", f"/ui/api/battles/{bid}/turn", json={"prompt": "hi", "max_tokens": 2}) as r:
        r.read()
    log = arena.arena.votes
    real = log.append

    def fail(rec):
        raise OSError("disk full")
    monkeypatch.setattr(log, "append", fail)
    r = c.post(f"/ui/api/battles/{bid}/vote", json={"vote": "a"})
    assert r.status_code == 500 and r.json()["error"]["code"] == "vote_not_saved"
    monkeypatch.setattr(log, "append", real)
    assert c.post(f"/ui/api/battles/{bid}/vote", json={"vote": "a"}).status_code == 200


def _wait_up(url: str, proc: subprocess.Popen, timeout: float = 180.0) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise AssertionError(f"arena exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise AssertionError("arena did not start")


def test_kill_9_during_voting_loses_no_acknowledged_vote(arena, tmp_path):
    """A real ``instructkit arena --url`` process, four voters hammering it, SIGKILL while votes are in flight:
    every vote answered 200 is on disk exactly once, and the file reads back (eval leaderboard's reader)."""
    from instructkit.judging.ratings import load_battles
    from instructkit.serve.server import free_port
    from instructkit.serve.ui.votes import VoteLog
    from tests.conftest import REPO

    path, port = tmp_path / "votes.jsonl", free_port()
    env = {**os.environ, "OPENAI_API_KEY": KEY, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "instructkit", "arena", "--url", arena.url, "--models",
                             "tiny,ada,bob", "--votes", str(path), "--port", str(port), "--api-key", "k9"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{port}"
    acked: list[str] = []
    stop = threading.Event()

    def voter(k: int) -> None:
        try:
            c = login(base, "k9")
            while not stop.is_set():
                bid = c.post("/ui/api/battles", json={}).json()["battle_id"]
                with c.stream("POST", f"/ui/api/battles/{bid}/turn", json={"prompt": f"q{k}", "max_tokens": 1}) as r:
                    r.read()
                if c.post(f"/ui/api/battles/{bid}/vote", json={"vote": "ab"[k % 2]}).status_code == 200:
                    acked.append(bid)
        except (httpx.HTTPError, ValueError, KeyError):  # the server died under us
            pass
    try:
        _wait_up(base, proc)
        threads = [threading.Thread(target=voter, args=(k,), daemon=True) for k in range(4)]
        for t in threads:
            t.start()
        t0 = time.time()
        while len(acked) < 8 and time.time() - t0 < 120:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        stop.set()
        for t in threads:
            t.join(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert len(acked) >= 8
    raw = path.read_bytes()
    complete = raw[: raw.rfind(b"\n") + 1].decode().splitlines()
    ids = [json.loads(x)["battle_id"] for x in complete]  # every complete line parses
    assert len(ids) == len(set(ids)) and set(acked) <= set(ids)
    log = VoteLog(path)  # the next start: a torn tail (never acknowledged) would be moved aside
    assert [r["battle_id"] for r in log.records] == ids
    assert [r["battle_id"] for r in load_battles(path)] == ids
