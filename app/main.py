"""``create_app``: the FastAPI application (REST API under /api/v1, OpenAPI at /docs, /healthz).

The app never trains: it reads what workers write and writes requests for them (DESIGN section 3,
docs/database-contract.md). One ``Guard`` middleware runs before anything else reads the request:
it checks the bearer token on ``/api/`` paths when ``settings.api_token`` is set (so an unauthenticated
client gets 401 whatever its body), then refuses bodies over ``settings.max_body_bytes`` with 413,
whether or not the client sent a Content-Length. Errors of every kind share one JSON shape
(``app.errors``). The HTML side (``app.web``), when present, is mounted by its own ``install(app)``.
"""

from __future__ import annotations

import secrets
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api import API_PREFIX, api_router
from app.db import make_engine, session_factory
from app.errors import error_response, install_error_handlers
from app.services import ping
from app.settings import Settings, get_settings

#: How often an open SSE stream polls the event table when nothing new came (seconds).
DEFAULT_SSE_POLL_S = 0.5


class Guard:
    """Pure ASGI middleware: bearer auth for /api/ paths, then the request body size limit."""

    def __init__(self, app: ASGIApp, token: str | None, max_body_bytes: int) -> None:
        self.app = app
        self.token = token.encode() if token else None
        self.max = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.token is not None and scope["path"].startswith("/api/") and not self._authorized(scope):
            await error_response(401, "missing or wrong bearer token (Authorization: Bearer <OPCOD_API_TOKEN>)",
                                 headers={"WWW-Authenticate": "Bearer"})(scope, receive, send)
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
        return scheme.lower() == b"bearer" and secrets.compare_digest(token.strip(), self.token or b"")

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        await error_response(413, f"request body larger than {self.max} bytes")(scope, receive, send)


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
        title="OPCoD Studio", version="1", lifespan=lifespan, docs_url="/docs", openapi_url="/openapi.json",
        description="On-Policy Co-Distillation runs you can watch and steer. Errors are "
                    '`{"error": {"message", "fields": [{"path", "message"}]}}`.')
    app.state.settings = settings
    app.state.engine = engine
    app.state.db = session_factory(engine)
    app.state.sse_poll_s = sse_poll_s if sse_poll_s is not None else getattr(settings, "sse_poll_s", DEFAULT_SSE_POLL_S)
    install_error_handlers(app)
    app.include_router(api_router())

    @app.get("/healthz", tags=["meta"], summary="Liveness and database reachability (never needs a token)")
    async def healthz() -> Any:
        try:
            await run_in_threadpool(ping, app.state.db)
        except Exception as exc:  # the database is down: say so, do not crash
            return JSONResponse({"status": "error", "database": f"{type(exc).__name__}"}, status_code=503)
        return {"status": "ok", "database": "ok"}

    _install_web(app)
    app.add_middleware(Guard, token=settings.api_token, max_body_bytes=settings.max_body_bytes)
    return app


def _install_web(app: FastAPI) -> None:
    """Mount the HTML side when it exists (another module; the API works without it)."""
    import importlib

    try:
        web = importlib.import_module("app.web")
    except ModuleNotFoundError as err:
        if err.name != "app.web":
            raise
        return
    install = getattr(web, "install", None)
    if install is not None:
        install(app)


__all__ = ["API_PREFIX", "create_app", "Guard"]
