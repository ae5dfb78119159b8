"""What routes get from the app: the session factory, the settings, the bearer scheme (for /docs)."""

from __future__ import annotations

from fastapi import Request, Response
from fastapi.security import HTTPBearer

from app.services import SessionFactory
from app.settings import Settings

#: Documents the bearer token in OpenAPI; the check itself is ``app.guard.Guard`` (it runs before the
#: body is read, so an unauthenticated client learns nothing about its request).
bearer = HTTPBearer(auto_error=False, description="Needed on every /api/v1 call when OPCOD_API_TOKEN is set.")


def get_db(request: Request) -> SessionFactory:
    return request.app.state.db


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def link_next(request: Request, response: Response, **params) -> None:
    """A ``Link: <...>; rel="next"`` header for a list endpoint's next page (nothing when ``params`` has a None)."""
    if any(v is None for v in params.values()):
        return
    url = request.url.include_query_params(**params)
    response.headers["Link"] = f'<{url.path}?{url.query}>; rel="next"'
