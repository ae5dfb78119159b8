"""The HTML dashboard (htmx + SSE, server-rendered Jinja2): ``router`` has every page, ``install(app)``
mounts it and the static files on an app made by ``app.main.create_app`` (which calls it when this
package exists). Never imports torch, transformers, vLLM or the trainer."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from app.web.auth import router as auth_router
from app.web.pages import router
from app.web.templating import STATIC_DIR


def install(app: FastAPI) -> None:
    """Serve ``/static`` and the pages. Idempotent (a second call changes nothing)."""
    if getattr(app.state, "web_installed", False):
        return
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
    app.include_router(auth_router)
    app.include_router(router)
    app.state.web_installed = True


__all__ = ["install", "router"]
