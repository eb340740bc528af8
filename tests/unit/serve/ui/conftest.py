"""An arena on the tiny model with two LoRA adapters (three contestants), served from a thread."""

from __future__ import annotations

import httpx
import pytest

KEY = "arena-key-123"


@pytest.fixture(scope="session")
def arena(tiny_tokenizer, peft_tiny, adapter_dirs, tmp_path_factory):
    from instructkit.serve.adapters import ServedModels
    from instructkit.lm.engine import Engine
    from instructkit.serve.ui.run import serve_arena
    votes = tmp_path_factory.mktemp("arena") / "votes.jsonl"
    seed_votes(votes, 30)
    srv = serve_arena(Engine(peft_tiny, tiny_tokenizer, max_batch_size=16), tiny_tokenizer,
                      ServedModels("tiny", dict(adapter_dirs)), votes, api_key=KEY, bootstrap=200)
    srv.base = f"http://{srv.host}:{srv.port}"
    yield srv
    srv.close()


def seed_votes(path, n: int, seed: int = 0) -> None:
    """``n`` simulated votes among the three contestants (ada > bob > tiny), so the leaderboard has CIs."""
    import json
    import random
    rng = random.Random(seed)
    strength = {"ada": 1.0, "bob": 0.4, "tiny": 0.0}
    with open(path, "w") as f:
        for i in range(n):
            a, b = rng.sample(sorted(strength), 2)
            p = 1 / (1 + 10 ** (strength[b] - strength[a]))
            winner = "tie" if rng.random() < 0.15 else "model_a" if rng.random() < p else "model_b"
            f.write(json.dumps({"battle_id": f"seed{i}", "model_a": a, "model_b": b, "winner": winner,
                                "judge": "simulated", "conversation_a": [], "conversation_b": []}) + "\n")


def login(base: str, key: str = KEY) -> httpx.Client:
    """A client holding a UI session (as a browser after the login form)."""
    c = httpx.Client(base_url=base, timeout=60, headers={"X-Arena": "1"})
    r = c.post("/ui/login", content=f"key={key}", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 303 and r.headers["location"] == "/ui/", r.text
    return c


def sse(resp: httpx.Response) -> list[dict]:
    import json
    return [json.loads(line[5:]) for line in resp.iter_lines() if line.startswith("data:")]
