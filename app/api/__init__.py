"""The REST API, ``/api/v1`` (DESIGN section 5). Routes parse, call one service, return.

Never imports torch, transformers, vLLM or the trainer (tests/test_dependency_rules.py)."""

from __future__ import annotations

from fastapi import APIRouter, Security

from app.api import controls, exchanges, metrics, runs, stream, workers
from app.api.deps import bearer

API_PREFIX = "/api/v1"


def api_router() -> APIRouter:
    router = APIRouter(prefix=API_PREFIX, dependencies=[Security(bearer)])
    for module in (runs, exchanges, controls, metrics, stream, workers):
        router.include_router(module.router)
    return router
