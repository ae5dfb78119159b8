"""``create_app``: the FastAPI application (REST API under /api/v1, OpenAPI at /docs, /healthz).

The app never trains: it reads what workers write and writes requests for them (DESIGN section 3,
docs/database-contract.md). One ``Guard`` middleware runs before anything else reads the request:
when ``settings.api_token`` is set it lets a request through only with ``Authorization: Bearer <token>``
or the session cookie set by ``/login`` (browsers cannot put a header on an EventSource, so the
dashboard's SSE rides on the cookie); API paths get 401, pages a redirect to ``/login``. Then it
refuses bodies over ``settings.max_body_bytes`` with 413,
whether or not the client sent a Content-Length. Errors of every kind share one JSON shape
(``app.errors``). The HTML side (``app.web``), when present, is mounted by its own ``install(app)``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from contextlib import asynccontextmanager
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import JSONResponse, RedirectResponse
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api import API_PREFIX, api_router
from app.db import make_engine, session_factory
from app.errors import error_response, install_error_handlers
from app.services import ping
from app.settings import Settings, get_settings
from app.web import install as install_web

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
        cookie = SimpleCookie((_header(scope, b"cookie") or b"").decode("latin-1")).get(SESSION_COOKIE)
        return cookie is not None and secrets.compare_digest(cookie.value.encode(), self.cookie or b"")

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        await error_response(413, f"request body larger than {self.max} bytes")(scope, receive, send)


#: Paths that never need the token: liveness, the login form, static files (vendored JS/CSS) and the
#: API description (it documents routes, it holds no data).
OPEN_PATHS = ("/healthz", "/login", "/static/", "/docs", "/openapi.json")
SESSION_COOKIE = "opcod_session"


def session_cookie_value(token: str) -> str:
    """What the session cookie holds: an HMAC of the token, so the token itself never sits in a cookie."""
    return hmac.new(token.encode(), b"opcod-session-v1", hashlib.sha256).hexdigest()


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value
    return None


def create_app(settings: Settings | None = None, *, sse_poll_s: float | None = None) -> FastAPI:
    settings = settings or get_settings()
    engine = make_engine(settings.database_url)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        engine.dispose()

    app = FastAPI(
        title="OPCoD Studio", version="1", lifespan=lifespan, docs_url=None, openapi_url="/openapi.json",
        description="On-Policy Co-Distillation runs you can watch and steer. Errors are "
                    '`{"error": {"message", "fields": [{"path", "message"}]}}`.')
    app.state.settings = settings
    app.state.engine = engine
    app.state.db = session_factory(engine)
    app.state.sse_poll_s = sse_poll_s if sse_poll_s is not None else settings.sse_poll_s
    install_error_handlers(app)
    app.include_router(api_router())

    @app.get("/healthz", tags=["meta"], summary="Liveness and database reachability (never needs a token)")
    async def healthz() -> Any:
        try:
            await run_in_threadpool(ping, app.state.db)
        except Exception as exc:  # the database is down: say so, do not crash
            return JSONResponse({"status": "error", "database": f"{type(exc).__name__}"}, status_code=503)
        return {"status": "ok", "database": "ok"}

    @app.get("/docs", include_in_schema=False)
    async def docs() -> Any:
        """Swagger UI from the vendored files: the API docs work offline."""
        return get_swagger_ui_html(openapi_url="/openapi.json", title="OPCoD Studio API",
                                   swagger_js_url="/static/vendor/swagger-ui-bundle-5.35.0.js",
                                   swagger_css_url="/static/vendor/swagger-ui-5.35.0.css",
                                   swagger_favicon_url="data:,")

    install_web(app)
    app.add_middleware(Guard, token=settings.api_token, max_body_bytes=settings.max_body_bytes)
    return app


__all__ = ["API_PREFIX", "create_app", "Guard"]
