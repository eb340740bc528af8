"""The arena's login: every UI route needs the session (the same --api-key as the API), nothing shows server
paths, the cookie never opens /v1, and an open arena (no key) still gives each browser a session."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.unit.serve.ui.conftest import KEY, login

BID = "x" * 24
#: every UI route (method, path as FastAPI declares it) -> a concrete request to try
ROUTES = {
    ("GET", "/ui/"): "/ui/",
    ("GET", "/ui/static/{name}"): "/ui/static/app.js",
    ("POST", "/ui/logout"): "/ui/logout",
    ("GET", "/ui/api/config"): "/ui/api/config",
    ("POST", "/ui/api/chat"): "/ui/api/chat",
    ("POST", "/ui/api/battles"): "/ui/api/battles",
    ("POST", "/ui/api/battles/{bid}/turn"): f"/ui/api/battles/{BID}/turn",
    ("POST", "/ui/api/battles/{bid}/vote"): f"/ui/api/battles/{BID}/vote",
    ("GET", "/ui/api/leaderboard"): "/ui/api/leaderboard",
    ("GET", "/ui/api/winrate.png"): "/ui/api/winrate.png",
}
OPEN = {("GET", "/ui/login"), ("POST", "/ui/login")}
EXTRA = [("GET", "/ui/static/app.css"), ("GET", "/ui/nowhere"), ("POST", "/ui/api/nowhere"), ("GET", "/ui/api/x/../config")]


def _ui_routes(arena) -> set[tuple[str, str]]:
    ui = arena.server.config.app.ui  # the FrontDoor's UI app; its OpenAPI schema lists every route
    return {(m.upper(), path) for path, ops in ui.openapi()["paths"].items() for m in ops}


def test_the_route_table_covers_every_ui_route(arena):
    # a new route must be added to ROUTES (and so to the auth test below) or this fails
    assert _ui_routes(arena) == set(ROUTES) | OPEN


def _forged_cookies() -> dict[str, str]:
    from instructkit.serve.ui.auth import Sessions
    mine, other = Sessions(KEY), Sessions("another-key")
    payload = f"sid123.{int(time.time()) - 10}"
    return {"garbage": "nonsense", "unsigned": f"sid123.{int(time.time()) + 999}.",
            "other key": other.issue(), "expired": f"{payload}.{mine._sig(payload)}",
            "tampered": mine.issue()[:-1] + "0"}


@pytest.mark.parametrize("cookie", [None, *_forged_cookies()])
def test_every_ui_route_refuses_without_a_valid_session(arena, cookie):
    jar = {} if cookie is None else {"ik_arena": _forged_cookies()[cookie]}
    with httpx.Client(base_url=arena.base, cookies=jar, headers={"X-Arena": "1"}, timeout=30) as c:
        for method, path in [*((m, p) for (m, _), p in ROUTES.items()), *EXTRA]:
            r = c.request(method, path, json={})
            if method == "GET" and not path.startswith("/ui/api/"):
                assert r.status_code == 303 and r.headers["location"] == "/ui/login", (method, path)
            else:
                assert r.status_code == 401, (method, path, r.status_code)
                assert r.json()["error"]["code"] == "login_required"
            assert "set-cookie" not in r.headers
        assert c.get("/").headers["location"] == "/ui/"


def test_login_logout_and_cookie(arena, monkeypatch):
    from instructkit.serve.ui import pages
    monkeypatch.setattr(pages, "WRONG_KEY_DELAY_S", 0.0)
    with httpx.Client(base_url=arena.base, timeout=30) as c:
        assert c.get("/ui/login").status_code == 200
        bad = c.post("/ui/login", content="key=wrong", headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert bad.status_code == 401 and "Wrong key" in bad.text and "set-cookie" not in bad.headers
    c = login(arena.base)
    cookie = c.cookies.jar
    attrs = [ck for ck in cookie if ck.name == "ik_arena"][0]
    assert attrs.path == "/ui" and attrs.has_nonstandard_attr("HttpOnly")
    assert attrs.get_nonstandard_attr("SameSite") == "Strict"
    assert c.get("/ui/").status_code == 200 and c.get("/ui/api/config").json()["login"] is True
    # the page's state changes need the X-Arena header (no cross-site form can send it)
    assert httpx.post(arena.base + "/ui/api/battles", cookies=c.cookies, json={}).status_code == 403
    # the cookie opens the UI, never the API: /v1 stays Bearer-only
    assert httpx.get(arena.base + "/v1/models", cookies={"ik_arena": attrs.value}).status_code == 401
    assert httpx.get(arena.base + "/v1/models", headers={"Authorization": f"Bearer {KEY}"}).status_code == 200
    out = c.post("/ui/logout")
    assert out.status_code == 303 and "Max-Age=0" in out.headers["set-cookie"]
    assert c.get("/ui/api/config").status_code == 401


def test_no_page_or_answer_shows_a_server_path(arena, adapter_dirs):
    from tests.conftest import REPO
    c = login(arena.base)
    bid = c.post("/ui/api/battles", json={}).json()["battle_id"]
    bodies = [c.get(p).text for p in ("/ui/", "/ui/static/app.js", "/ui/static/app.css", "/ui/api/config",
                                      "/ui/api/leaderboard", "/ui/login")]
    bodies += [c.post("/ui/api/chat", json={"model": "nope", "messages": [{"role": "user", "content": "x"}]}).text,
               c.post(f"/ui/api/battles/{bid}/vote", json={"vote": "a"}).text,
               c.post("/ui/api/battles/zzz/turn", json={"prompt": "x"}).text]
    secrets_ = [*adapter_dirs.values(), str(arena.arena.votes.path), str(arena.arena.votes.path.parent), str(REPO)]
    for body in bodies:
        for s in secrets_:
            assert s not in body


def test_path_masking_in_upstream_errors():
    from instructkit.serve.ui.relay import UpstreamError
    e = UpstreamError(500, "model failed to load: OSError: /home/u/models/llama-7b/config.json missing; C:\\m\\x")
    assert "/home" not in e.message and "C:\\m" not in e.message and e.message.count("<path>") == 2
    assert UpstreamError(400, "max_tokens is at most 512 here").message == "max_tokens is at most 512 here"


def test_open_arena_over_url_gives_an_anonymous_session(arena, tmp_path):
    """No --api-key: no login, but each browser still gets its session (votes carry it). Runs in --url mode,
    against the first arena's OpenAI routes."""
    from instructkit.serve.ui.run import serve_remote_arena
    srv = serve_remote_arena(arena.url, tmp_path / "v.jsonl", url_key=KEY)
    try:
        base = f"http://{srv.host}:{srv.port}"
        assert httpx.get(base + "/health").json() == {"status": "ok"}
        assert httpx.get(base + "/v1/models").status_code == 404  # no API here: the models live at --url
        with httpx.Client(base_url=base, headers={"X-Arena": "1"}, timeout=60) as c:
            first = c.get("/ui/")
            assert first.status_code == 200 and "ik_arena=" in first.headers["set-cookie"]
            cfg = c.get("/ui/api/config").json()
            assert set(cfg["models"]) == {"tiny", "ada", "bob"} and cfg["login"] is False
            assert "set-cookie" not in c.get("/ui/api/config").headers  # the session is kept
            bid = c.post("/ui/api/battles", json={}).json()["battle_id"]
            with c.stream("POST", f"/ui/api/battles/{bid}/turn", json={"prompt": "hi", "max_tokens": 3}) as r:
                assert r.status_code == 200 and '"done": true' in r.read().decode()
            assert c.post(f"/ui/api/battles/{bid}/vote", json={"vote": "tie"}).json()["winner"] == "tie"
        # another browser (no cookie) cannot touch that battle
        assert httpx.post(base + f"/ui/api/battles/{bid}/vote", json={"vote": "a"},
                          headers={"X-Arena": "1"}).status_code == 404
    finally:
        srv.close()
