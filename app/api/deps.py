"""What routes get from the app: the session factory, the settings, the bearer scheme (for /docs)."""

from __future__ import annotations

from fastapi import Request
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
