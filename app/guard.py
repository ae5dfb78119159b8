"""``Guard``: the ASGI middleware that authenticates requests and bounds their bodies, and the sign-in session.

When ``settings.api_token`` is set, a request gets through only with ``Authorization: Bearer <token>`` or
a signed-in dashboard session. The session is Starlette's signed cookie (``SessionMiddleware``, outside this
middleware; SameSite Strict, HttpOnly, ``Secure`` with ``OPCOD_SECURE_COOKIES``): ``/login`` stores a
fingerprint of the token and the sign-in time in it, so it expires ``settings.session_max_age_s`` after
sign-in, ``/logout`` ends it, and changing the token ends every session. The session serves the pages and
the dashboard's *reads* of the API (its event streams and exports: browsers cannot put a header on an
EventSource); writes to the API need the bearer token. API paths get 401, pages a redirect to ``/login``.
Wrong credentials are counted per client address (``FailureLimiter``): after ``max_failures`` within
``window_s`` the client gets 429 until the window has passed. Then it refuses API bodies that are not JSON
with 415 (``app.request_policy.json_body_refusal``) and bodies over ``settings.max_body_bytes`` with 413,
whether or not the client sent a Content-Length. Its own module so that the login route (``app.web.auth``)
and ``create_app`` (``app.main``) share it without importing each other.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import deque
from urllib.parse import quote

from fastapi.responses import RedirectResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import error_response
from app.request_policy import json_body_refusal


class FailureLimiter:
    """Failed authentications per client address in a sliding window (in memory, per server process)."""

    def __init__(self, max_failures: int = 10, window_s: float = 60.0, max_clients: int = 10_000) -> None:
        self.max_failures, self.window_s, self.max_clients = max_failures, window_s, max_clients
        self._failures: dict[str, deque[float]] = {}

    def retry_after(self, client: str) -> float | None:
        """Seconds until ``client`` may try again, or None when it may now."""
        seen = self._prune(client, time.monotonic())
        if seen is None or len(seen) < self.max_failures:
            return None
        return max(1.0, self.window_s - (time.monotonic() - seen[0]))

    def fail(self, client: str) -> None:
        now = time.monotonic()
        if client not in self._failures and len(self._failures) >= self.max_clients:
            self._failures.pop(next(iter(self._failures)))  # forget the oldest client
        self._prune(client, now)
        self._failures.setdefault(client, deque()).append(now)

    def _prune(self, client: str, now: float) -> deque[float] | None:
        seen = self._failures.get(client)
        while seen and now - seen[0] > self.window_s:
            seen.popleft()
        if seen is not None and not seen:
            del self._failures[client]
            return None
        return seen


class Guard:
    """Pure ASGI middleware: authentication (bearer token or signed-in session), then the body rules."""

    def __init__(self, app: ASGIApp, token: str | None, max_body_bytes: int, session_max_age_s: float = 12 * 3600,
                 limiter: FailureLimiter | None = None) -> None:
        self.app = app
        self.token = token.encode() if token else None
        self.fingerprint = token_fingerprint(token) if token else None
        self.session_max_age_s = session_max_age_s
        self.limiter = limiter or FailureLimiter()
        self.max = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refused = self._refusal(scope)
        if refused is not None:
            await refused(scope, receive, send)
            return
        await self._with_body(scope, receive, send)

    def _refusal(self, scope: Scope):
        """The response refusing an unauthenticated request, or None when it may go on."""
        path = scope["path"]
        if self.token is None or path.startswith(OPEN_PATHS):
            return None
        client = client_address(scope)
        wait = self.limiter.retry_after(client) if _header(scope, b"authorization") is not None else None
        if wait is not None:  # a client that failed too often may not even try, until the window has passed
            return too_many_failures(client, wait)
        verdict = self._authorized(scope)
        if verdict is True:
            return None
        if verdict == "wrong":
            self.limiter.fail(client)
        if path.startswith("/api/"):
            return error_response(401, "missing or wrong bearer token (Authorization: Bearer <OPCOD_API_TOKEN>)",
                                  headers={"WWW-Authenticate": "Bearer"})
        return RedirectResponse(f"/login?next={quote(path)}", status_code=303)

    async def _with_body(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The body rules (JSON on the API, size), then the app with the buffered body."""
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

    def _authorized(self, scope: Scope) -> bool | str:
        """True; "wrong" (credentials presented and refused: counted by the limiter); or False (none)."""
        value = _header(scope, b"authorization")
        if value is not None:
            scheme, _, token = value.partition(b" ")
            if scheme.lower() == b"bearer" and secrets.compare_digest(token.strip(), self.token or b""):
                return True
            return "wrong"
        session = scope.get("session") or {}
        if not session.get("auth"):
            return False
        fresh = isinstance(session.get("auth_at"), (int, float)) and \
            time.time() - session["auth_at"] < self.session_max_age_s
        if not fresh or not secrets.compare_digest(str(session["auth"]).encode(), (self.fingerprint or "").encode()):
            return False  # expired, or signed in under another token: sign in again
        # the session serves pages and the dashboard's reads of the API; API writes need the token
        return not scope["path"].startswith("/api/") or scope["method"] in ("GET", "HEAD")

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        await error_response(413, f"request body larger than {self.max} bytes")(scope, receive, send)


#: Paths that never need the token: liveness, the login form, static files (vendored JS/CSS) and the
#: API description (it documents routes, it holds no data).
OPEN_PATHS = ("/healthz", "/login", "/static/", "/docs", "/openapi.json")
#: The signed dashboard session (sign-in, CSRF token; Starlette SessionMiddleware, app.web.csrf).
UI_SESSION_COOKIE = "opcod_ui"


def token_fingerprint(token: str) -> str:
    """What a signed-in session holds: an HMAC of the token (the token itself never sits in a cookie, and a
    new token ends every session)."""
    return hmac.new(token.encode(), b"opcod-session-v2", hashlib.sha256).hexdigest()


def too_many_failures(client: str, wait: float):
    return error_response(429, f"too many failed authentications from {client}; try again in {wait:.0f} s",
                          headers={"Retry-After": f"{wait:.0f}"})


def client_address(scope: Scope) -> str:
    client = scope.get("client")
    return client[0] if client else "local"


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value
    return None
