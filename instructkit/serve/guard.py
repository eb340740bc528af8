"""ASGI middleware in front of every route: API key and readiness.

The key check sits *outside* the router, so no route — present, future, mistyped or a framework side
route — is reachable without the key (vLLM's key could be bypassed through side routes: vllm#18892).
Only ``GET /health`` is open. Keys are compared in constant time over their SHA-256 digests (equal
length, so not even the key's length leaks) and never written to a log or an error body.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any, Callable


def _digest(b: bytes) -> bytes:
    return hashlib.sha256(b).digest()


async def send_json(send: Callable[..., Any], status: int, body: dict[str, Any],
                    headers: dict[str, str] | None = None) -> None:
    raw = json.dumps(body).encode()
    hs = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
    hs += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": hs})
    await send({"type": "http.response.body", "body": raw})


def _error(message: str, code: str, type_: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": type_, "param": None, "code": code}}


class Guard:
    def __init__(self, app: Any, state: Any):
        self.app, self.state = app, state

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope.get("path") == "/health":
            return await self.app(scope, receive, send)
        key = self.state.api_key
        if key:
            given = b""
            for name, value in scope.get("headers", []):
                if name == b"authorization":
                    given = value
            scheme, _, token = given.partition(b" ")
            ok = hmac.compare_digest(_digest(token.strip()), _digest(key.encode()))
            if not (ok and scheme.lower() == b"bearer"):
                msg = ("You didn't provide an API key (Authorization: Bearer KEY)." if not given
                       else "Incorrect API key provided.")
                return await send_json(send, 401, _error(msg, "invalid_api_key", "invalid_request_error"))
        if self.state.engine is None:
            if self.state.load_error:
                return await send_json(send, 500, _error(f"model failed to load: {self.state.load_error}",
                                                         "model_load_failed", "server_error"))
            return await send_json(send, 503, _error("The model is still loading; retry shortly.",
                                                     "model_loading", "server_error"), {"Retry-After": "2"})
        return await self.app(scope, receive, send)
