"""The arena's leaderboard on a known vote set equals ``instructkit eval leaderboard`` on the same file,
number for number; the judge's verdicts are a separate column; the win-rate matrix is served."""

from __future__ import annotations

import json
import random

import httpx
from typer.testing import CliRunner

WIN = {"model_a": 1.0, "model_b": 0.0, "tie": 0.5, "tie (bothbad)": 0.5}


def _votes(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    strength = {"alpha": 2.0, "beta": 1.0, "gamma": 0.0}
    out = []
    for i in range(n):
        a, b = rng.sample(sorted(strength), 2)
        p = 1 / (1 + 10 ** ((strength[b] - strength[a]) / 2))
        u = rng.random()
        winner = "tie" if u < 0.1 else "tie (bothbad)" if u < 0.15 else "model_a" if rng.random() < p else "model_b"
        out.append({"battle_id": f"b{i}", "model_a": a, "model_b": b, "winner": winner, "vote": "x",
                    "conversation_a": [], "conversation_b": [], "session": "s", "tstamp": i})
    return out


def test_arena_leaderboard_equals_eval_leaderboard(tmp_path):
    from instructkit.cli import app
    from instructkit.serve.ui.run import serve_remote_arena
    from instructkit.serve.ui.votes import VoteLog

    votes, judge = tmp_path / "votes.jsonl", tmp_path / "judge_battles.jsonl"
    log = VoteLog(votes)
    known = _votes(90, 0)
    for rec in known:  # written the way the arena writes a vote
        log.append(rec)
    log.close()
    judge.write_text("".join(json.dumps(r) + "\n" for r in _votes(40, 1)))
    kw = ["--bootstrap", "300", "--permutations", "40", "--seed", "3"]
    for f, out in ((votes, "cli"), (judge, "cli_judge")):
        res = CliRunner().invoke(app, ["eval", "leaderboard", "--battles", str(f), "--out", str(tmp_path / out), *kw])
        assert res.exit_code == 0, res.output
    cli = json.loads((tmp_path / "cli" / "ratings.json").read_text())
    cli_judge = {r["model"]: r for r in json.loads((tmp_path / "cli_judge" / "ratings.json").read_text())}

    srv = serve_remote_arena("http://127.0.0.1:9/v1", votes, api_key="k", models=["alpha", "beta", "gamma"],
                             judge_battles=[judge], bootstrap=300, permutations=40, seed=3)
    try:
        c = httpx.Client(base_url=f"http://{srv.host}:{srv.port}", timeout=60, headers={"X-Arena": "1"})
        c.post("/ui/login", content="key=k", headers={"Content-Type": "application/x-www-form-urlencoded"})
        board = c.get("/ui/api/leaderboard").json()
        png = c.get("/ui/api/winrate.png")
    finally:
        srv.close()
    assert board["votes"] == 90 and board["judge"] is True
    rows = board["rows"]
    assert [{k: v for k, v in r.items() if k != "judge"} for r in rows] == cli  # every number, exactly
    for r in rows:
        j = cli_judge[r["model"]]
        assert r["judge"] == {"rating": j["rating"], "ci_low": j["ci_low"], "ci_high": j["ci_high"],
                              "battles": j["battles"]}
    # counts by hand from the known set
    for r in rows:
        pts = [WIN[v["winner"]] if v["model_a"] == r["model"] else 1 - WIN[v["winner"]]
               for v in known if r["model"] in (v["model_a"], v["model_b"])]
        assert (r["battles"], r["wins"], r["ties"], r["losses"]) == (len(pts), pts.count(1.0), pts.count(0.5),
                                                                      pts.count(0.0))
    assert [r["model"] for r in rows] == ["alpha", "beta", "gamma"]  # the simulated order is recovered
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n" and len(png.content) > 5000
