"""The pages: login, the arena page itself and its two static files (served from the package, by name).

No page is a template over server data: the HTML is fixed, the script asks ``/ui/api/config`` for model
*names* only, so no server path (model folders, adapters, the vote log) ever reaches a browser.
"""

from __future__ import annotations

import asyncio
from importlib import resources
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from instructkit.serve.ui.auth import COOKIE

STATIC = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}
_CSP_APP = ("default-src 'self'; img-src 'self' blob: data:; script-src 'self'; style-src 'self'; "
            "connect-src 'self'; frame-ancestors 'none'; form-action 'self'")
_CSP_LOGIN = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"
#: a wrong key waits this long: guessing a key over HTTP is slow
WRONG_KEY_DELAY_S = 1.0


def _asset(name: str) -> str:
    return resources.files("instructkit.serve.ui").joinpath("static", name).read_text(encoding="utf-8")


def _headers(csp: str) -> dict[str, str]:
    return {"Content-Security-Policy": csp, "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY",
            "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}


def router(st: object) -> APIRouter:
    r = APIRouter(prefix="/ui")
    sessions = st.sessions  # type: ignore[attr-defined]

    def login_page(error: str = "", status: int = 200) -> HTMLResponse:
        html = _asset("login.html").replace("<!--error-->", f'<p class="err">{error}</p>' if error else "")
        return HTMLResponse(html, status_code=status, headers=_headers(_CSP_LOGIN))

    @r.get("/login")
    async def login_form() -> HTMLResponse:
        return login_page()

    @r.post("/login")
    async def login(request: Request) -> Response:
        # a plain form post (works without JavaScript); parsed by hand: no python-multipart dependency
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        key = (form.get("key") or [""])[0]
        if not sessions.key_ok(key):
            await asyncio.sleep(WRONG_KEY_DELAY_S)
            return login_page("Wrong key.", 401)
        resp = RedirectResponse("/ui/", status_code=303)
        https = request.url.scheme == "https" or request.headers.get("x-forwarded-proto") == "https"
        resp.headers.append("set-cookie", sessions.set_cookie(sessions.issue(), secure=https))
        return resp

    @r.post("/logout")
    async def logout() -> Response:
        resp = RedirectResponse("/ui/login", status_code=303)
        resp.headers.append("set-cookie", f"{COOKIE}=; Path=/ui; Max-Age=0; HttpOnly; SameSite=Strict")
        return resp

    @r.get("/")
    async def page() -> HTMLResponse:
        return HTMLResponse(_asset("index.html"), headers=_headers(_CSP_APP))

    @r.get("/static/{name}")
    async def static(name: str) -> Response:
        if name not in STATIC:
            return Response("not found", status_code=404, media_type="text/plain")
        return Response(_asset(name), media_type=STATIC[name], headers=_headers(_CSP_APP))

    return r
