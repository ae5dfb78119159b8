"""/api/v1/workers: which worker processes are alive (``app.services.workers``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from app.api.deps import get_db, get_settings
from app.schemas_workers import WorkersOut
from app.services import SessionFactory, workers

router = APIRouter(tags=["workers"])
Db = Annotated[SessionFactory, Depends(get_db)]


@router.get("/workers", response_model=WorkersOut,
            summary="Worker processes seen in the last day: alive (heartbeat fresh), busy (holding a run)")
def list_workers(request: Request, db: Db, include_stopped: bool = Query(False)) -> WorkersOut:
    return workers.list_workers(db, get_settings(request).stale_after_s, include_stopped=include_stopped)
