"""The arena's front door: ``/`` and ``/ui/...`` go to the web UI behind a login; everything else to the API.

The UI is protected by the same key as the API (``--api-key``): ``POST /ui/login`` with the key sets a
session cookie (HttpOnly, SameSite=Strict, signed with an HMAC derived from the key, expiring). The
cookie opens ``/ui/...`` only — never ``/v1`` (that stays ``Authorization: Bearer``), so a browser session
cannot be turned into API access. State-changing UI requests also need the ``X-Arena: 1`` header: a
custom header cannot be sent cross-site without a CORS preflight, which this server never grants
(defence in depth beside SameSite). Without ``--api-key`` the UI is open and the cookie only carries the
anonymous session id votes are recorded under. Like the API guard, this sits in front of the router, so
every UI path, present or future, is covered.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from typing import Any, Callable, Optional

from instructkit.serve.guard import send_json

COOKIE = "ik_arena"
#: open without a session: the login page and the login itself
OPEN = {("GET", "/ui/login"), ("POST", "/ui/login")}
SAFE_METHODS = {"GET", "HEAD"}


class Sessions:
    """Signed, expiring session cookies ``sid.expiry.sig``; ``tag(sid)`` is the anonymous id votes carry."""

    def __init__(self, api_key: Optional[str], max_age_s: int = 7 * 24 * 3600):
        self.api_key, self.max_age_s = api_key, max_age_s
        # derived from the key: sessions survive a restart; without a key, a fresh secret per process
        self._secret = (hmac.new(api_key.encode(), b"instructkit-arena-session", hashlib.sha256).digest()
                        if api_key else secrets.token_bytes(32))

    def _sig(self, payload: str) -> str:
        return hmac.new(self._secret, payload.encode(), hashlib.sha256).hexdigest()[:32]

    def issue(self) -> str:
        payload = f"{secrets.token_urlsafe(18)}.{int(time.time()) + self.max_age_s}"
        return f"{payload}.{self._sig(payload)}"

    def check(self, value: str) -> Optional[str]:
        """The session id of a valid, unexpired cookie value, else None."""
        sid, _, rest = value.partition(".")
        exp, _, sig = rest.partition(".")
        if not (sid and exp.isdigit() and sig) or int(exp) < time.time():
            return None
        return sid if hmac.compare_digest(sig, self._sig(f"{sid}.{exp}")) else None

    def tag(self, sid: str) -> str:
        return hmac.new(self._secret, b"tag:" + sid.encode(), hashlib.sha256).hexdigest()[:16]

    def key_ok(self, given: str) -> bool:
        if not self.api_key:
            return True
        d = lambda s: hashlib.sha256(s.encode()).digest()  # noqa: E731  (equal lengths: nothing leaks)
        return hmac.compare_digest(d(given), d(self.api_key))

    def set_cookie(self, value: str, secure: bool = False) -> str:
        """``secure``: the request came over https (behind a TLS proxy): the browser sends it back only so."""
        return (f"{COOKIE}={value}; Path=/ui; Max-Age={self.max_age_s}; HttpOnly; SameSite=Strict"
                + ("; Secure" if secure else ""))


def _cookie(scope: dict[str, Any]) -> str:
    for name, value in scope.get("headers", []):
        if name == b"cookie":
            for part in value.decode("latin-1").split(";"):
                k, _, v = part.strip().partition("=")
                if k == COOKIE:
                    return v
    return ""


def _header(scope: dict[str, Any], key: bytes) -> bytes:
    return next((v for k, v in scope.get("headers", []) if k == key), b"")


async def _redirect(send: Callable[..., Any], location: str) -> None:
    await send({"type": "http.response.start", "status": 303,
                "headers": [(b"location", location.encode()), (b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})


class FrontDoor:
    """ASGI dispatcher: UI paths -> session check -> ``ui``; other paths -> ``api`` (its own key guard)."""

    def __init__(self, api: Any, ui: Any, sessions: Sessions):
        self.api, self.ui, self.sessions = api, ui, sessions

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path == "/" or path == "/ui" or path.startswith("/ui/")):
            return await self.api(scope, receive, send)
        if path in ("/", "/ui"):
            return await _redirect(send, "/ui/")
        method = scope["method"]
        if (method, path) in OPEN:
            return await self.ui(scope, receive, send)
        sid = self.sessions.check(_cookie(scope))
        if sid is None and self.sessions.api_key:
            if method in SAFE_METHODS and not path.startswith("/ui/api/"):
                return await _redirect(send, "/ui/login")
            return await send_json(send, 401, {"error": {"message": "log in first (POST /ui/login with the API key)",
                                                         "type": "invalid_request_error", "param": None,
                                                         "code": "login_required"}})
        if method not in SAFE_METHODS and _header(scope, b"x-arena") != b"1":
            return await send_json(send, 403, {"error": {"message": "missing X-Arena header", "param": None,
                                                         "type": "invalid_request_error", "code": "csrf"}})
        if sid is None:  # open arena: the first request gets its anonymous session
            value = self.sessions.issue()
            sid = self.sessions.check(value)
            send = _with_cookie(send, self.sessions.set_cookie(value))
        scope = dict(scope, state={**scope.get("state", {}), "arena_session": sid})
        return await self.ui(scope, receive, send)


def _with_cookie(send: Callable[..., Any], cookie: str) -> Callable[..., Any]:
    async def wrapped(msg: dict[str, Any]) -> None:
        if msg["type"] == "http.response.start":
            msg = dict(msg, headers=list(msg.get("headers", [])) + [(b"set-cookie", cookie.encode())])
        await send(msg)
    return wrapped
