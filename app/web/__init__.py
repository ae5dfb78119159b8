"""The HTML dashboard (htmx + SSE, server-rendered Jinja2): ``router`` has every page, ``install(app)``
mounts it and the static files on an app made by ``app.main.create_app`` (which calls it when this
package exists). Never imports torch, transformers, vLLM or the trainer."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from app.errors import error_response

from app.web.auth import router as auth_router
from app.web.pages import router
from app.web.routing import error_page
from app.web.templating import STATIC_DIR


#: Paths that answer in JSON whatever the error (the API, its description, liveness, static files).
JSON_PATHS = ("/api/", "/openapi.json", "/healthz", "/static/")


def install(app: FastAPI) -> None:
    """Serve ``/static`` and the pages. Idempotent (a second call changes nothing)."""
    if getattr(app.state, "web_installed", False):
        return
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
    app.include_router(auth_router)
    app.include_router(router)

    @app.exception_handler(StarletteHTTPException)
    async def _html_or_json(request: Request, exc: StarletteHTTPException) -> Response:
        """An unknown page (or a wrong method on one) gets the dashboard's HTML error page; the API keeps
        its JSON errors."""
        message = exc.detail if isinstance(exc.detail, str) else "error"
        if request.url.path.startswith(JSON_PATHS):
            return error_response(exc.status_code, message, headers=getattr(exc, "headers", None))
        return error_page(request, exc.status_code, "page not found" if exc.status_code == 404 else message)

    app.state.web_installed = True


__all__ = ["install", "router"]
