"""``Guard``: the ASGI middleware that runs before anything else reads a request, and the session cookie.

When ``settings.api_token`` is set, a request gets through only with ``Authorization: Bearer <token>`` or
the session cookie set by ``/login`` (browsers cannot put a header on an EventSource, so the dashboard's
SSE rides on the cookie); API paths get 401, pages a redirect to ``/login``. Then it refuses API bodies that
are not JSON with 415 (``app.request_policy.json_body_refusal``) and bodies over
``settings.max_body_bytes`` with 413, whether or not the client sent a Content-Length. Its own module so
that the login route (``app.web.auth``) and ``create_app`` (``app.main``) share it without importing each
other.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import quote

from fastapi.responses import RedirectResponse
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import error_response
from app.request_policy import json_body_refusal


class Guard:
    """Pure ASGI middleware: bearer auth for /api/ paths, then the request body size limit."""

    def __init__(self, app: ASGIApp, token: str | None, max_body_bytes: int) -> None:
        self.app = app
        self.token = token.encode() if token else None
        self.cookie = session_cookie_value(token).encode() if token else None
        self.max = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        if self.token is not None and not path.startswith(OPEN_PATHS) and not self._authorized(scope):
            if path.startswith("/api/"):
                await error_response(401, "missing or wrong bearer token (Authorization: Bearer <OPCOD_API_TOKEN>)",
                                     headers={"WWW-Authenticate": "Bearer"})(scope, receive, send)
            else:
                await RedirectResponse(f"/login?next={quote(path)}", status_code=303)(scope, receive, send)
            return
        length = _header(scope, b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                await error_response(400, "invalid Content-Length header")(scope, receive, send)
                return
            if declared > self.max:
                await self._too_large(scope, receive, send)
                return
        refusal = json_body_refusal(scope)
        if refusal is not None:
            await error_response(*refusal)(scope, receive, send)
            return
        # Read the body up to the limit (chunked uploads have no Content-Length), then replay it.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size > self.max:
                await self._too_large(scope, receive, send)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        buffered: list[Message] = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replay() -> Message:
            if buffered:
                return buffered.pop()
            return await receive()

        await self.app(scope, replay, send)

    def _authorized(self, scope: Scope) -> bool:
        value = _header(scope, b"authorization") or b""
        scheme, _, token = value.partition(b" ")
        if scheme.lower() == b"bearer" and secrets.compare_digest(token.strip(), self.token or b""):
            return True
        # Starlette's lenient parser: a stray cookie (``a@b=1``, a nameless one, one without '=') is skipped,
        # never a 500 and never a reason to drop the session (http.cookies.SimpleCookie raises or stops there)
        cookie = cookie_parser((_header(scope, b"cookie") or b"").decode("latin-1")).get(SESSION_COOKIE)
        return cookie is not None and secrets.compare_digest(cookie.encode(), self.cookie or b"")

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        await error_response(413, f"request body larger than {self.max} bytes")(scope, receive, send)


#: Paths that never need the token: liveness, the login form, static files (vendored JS/CSS) and the
#: API description (it documents routes, it holds no data).
OPEN_PATHS = ("/healthz", "/login", "/static/", "/docs", "/openapi.json")
SESSION_COOKIE = "opcod_session"
#: The signed dashboard session (CSRF token; Starlette SessionMiddleware, app.web.csrf).
UI_SESSION_COOKIE = "opcod_ui"


def session_cookie_value(token: str) -> str:
    """What the session cookie holds: an HMAC of the token, so the token itself never sits in a cookie."""
    return hmac.new(token.encode(), b"opcod-session-v1", hashlib.sha256).hexdigest()


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value
    return None
