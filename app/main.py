"""``create_app``: the FastAPI application (REST API under /api/v1, OpenAPI at /docs, /healthz).

The app never trains: it reads what workers write and writes requests for them (DESIGN section 3,
docs/database-contract.md). One ``Guard`` middleware (``app.guard``: bearer token or session cookie,
body size limit) runs before anything else reads the request. Errors of every kind share one JSON shape
(``app.errors``). The HTML side (``app.web``), when present, is mounted by its own ``install(app)``.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.middleware.sessions import SessionMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware

from app.api import API_PREFIX, api_router
from app.api.event_feed import EventFeeds
from app.db import make_engine, session_factory
from app.errors import install_error_handlers
from app.schemas import RUN_CREATE_COMPONENTS
from app.guard import UI_SESSION_COOKIE, FailureLimiter, Guard
from app.request_policy import LOOPBACK_HOSTS, RequestPolicy
from app.services import ping
from app.services.run_policy import RunPolicy
from app.settings import Settings, get_settings
from app.web import install as install_web


def _document_run_create(app: FastAPI) -> None:
    """``POST /runs`` parses its union body itself (errors name config paths); its OpenAPI schema is generated
    from the models (``app.schemas.RunCreate``), whose component schemas are added here."""
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            FastAPI.openapi(app).setdefault("components", {}).setdefault("schemas", {}).update(RUN_CREATE_COMPONENTS)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


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
    app.state.run_policy = RunPolicy.from_settings(settings)
    app.state.open_streams = [0]  # event streams open now (app.api.stream; one event loop, no lock needed)
    app.state.engine = engine
    app.state.db = session_factory(engine)
    app.state.sse_poll_s = sse_poll_s if sse_poll_s is not None else settings.sse_poll_s
    app.state.event_feeds = EventFeeds(app.state.db, app.state.sse_poll_s)  # one poll per watched run
    install_error_handlers(app)
    app.include_router(api_router())
    _document_run_create(app)

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
    _install_middleware(app, settings)
    return app


def _install_middleware(app: FastAPI, settings: Settings) -> None:
    """Outermost first: Host check, then who may send what (app.request_policy), then the signed dashboard
    session (sign-in, CSRF tokens: app.web.csrf), then authentication and the body rules (app.guard)."""
    app.state.auth_limiter = FailureLimiter(settings.auth_failures_per_minute, window_s=60.0)
    app.add_middleware(Guard, token=settings.api_token, max_body_bytes=settings.max_body_bytes,
                       session_max_age_s=settings.session_max_age_s, limiter=app.state.auth_limiter)
    app.add_middleware(SessionMiddleware, secret_key=settings.session_secret(), session_cookie=UI_SESSION_COOKIE,
                       max_age=settings.session_max_age_s, same_site="strict", https_only=settings.secure_cookies)
    app.add_middleware(RequestPolicy, token=settings.api_token)
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=[*LOOPBACK_HOSTS, *settings.allowed_hosts],
                       www_redirect=False)


__all__ = ["API_PREFIX", "create_app", "Guard"]
