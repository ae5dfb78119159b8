"""/api/v1/runs: create, list, read, pause/resume/cancel, fork, checkpoints."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from app.api.deps import get_db, get_settings, link_next
from app.errors import DomainError
from app.schemas import RUN_CREATE_OPENAPI, CheckpointOut, ForkRequest, PresetOut, RunDetail, RunPage, RunStatus
from app.services import SessionFactory, runs

router = APIRouter(tags=["runs"])
Db = Annotated[SessionFactory, Depends(get_db)]


@router.post("/runs", status_code=201, response_model=RunDetail, openapi_extra=RUN_CREATE_OPENAPI,
             summary="Create a queued run from a full config or a preset with overrides")
async def create_run(request: Request, db: Db) -> RunDetail:
    raw = await request.body()
    try:
        body = json.loads(raw) if raw.strip() else None
    except (ValueError, RecursionError) as err:  # JSON and UTF-8 errors, integers over 4300 digits
        raise DomainError(f"malformed JSON body: {err}") from None
    settings = get_settings(request)
    return await run_in_threadpool(runs.create_run, db, body, settings.runs_dir, request.app.state.run_policy)


@router.get("/runs", response_model=RunPage, summary="Runs, newest first (keyset paged)")
def list_runs(db: Db, status: RunStatus | None = None, cursor: str | None = Query(None, max_length=200),
              limit: int = Query(50, ge=1, le=500)) -> RunPage:
    return runs.list_runs(db, status=status, cursor=cursor, limit=limit)


@router.get("/runs/{run_id}", response_model=RunDetail,
            summary="Status, progress, latest metrics, students and gate records of a run")
def get_run(run_id: int, db: Db) -> RunDetail:
    return runs.get_run_detail(db, run_id)


@router.post("/runs/{run_id}/pause", response_model=RunDetail,
             summary="Pause (queued: at once; running: at the next step boundary)")
def pause_run(run_id: int, db: Db) -> RunDetail:
    return runs.pause_run(db, run_id)


@router.post("/runs/{run_id}/resume", response_model=RunDetail, summary="Resume a paused run (back to the queue)")
def resume_run(run_id: int, db: Db) -> RunDetail:
    return runs.resume_run(db, run_id)


@router.post("/runs/{run_id}/cancel", response_model=RunDetail,
             summary="Cancel (queued/paused: at once; running: at the next step boundary)")
def cancel_run(run_id: int, db: Db) -> RunDetail:
    return runs.cancel_run(db, run_id)


@router.delete("/runs/{run_id}", status_code=204, summary="Delete a run that is not running: its records and its "
               "files (checkpoints, events.jsonl); 409 while it runs")
def delete_run(run_id: int, request: Request, db: Db) -> Response:
    runs.delete_run(db, run_id, get_settings(request).runs_dir)
    return Response(status_code=204)


@router.post("/runs/{run_id}/fork", status_code=201, response_model=RunDetail,
             summary="A new queued run from one of this run's checkpoints, with config overrides")
def fork_run(run_id: int, req: ForkRequest, request: Request, db: Db) -> RunDetail:
    return runs.fork_run(db, run_id, req, get_settings(request).runs_dir, request.app.state.run_policy)


@router.get("/runs/{run_id}/checkpoints", response_model=list[CheckpointOut], summary="Checkpoints, newest first")
def list_checkpoints(run_id: int, db: Db, request: Request, response: Response,
                     before_id: int | None = Query(None, ge=1, le=2**63 - 1),
                     limit: int = Query(500, ge=1, le=1000)) -> list[CheckpointOut]:
    items, nxt = runs.list_checkpoints(db, run_id, before_id, limit)
    link_next(request, response, before_id=nxt)
    return items


@router.get("/presets", response_model=list[PresetOut], tags=["meta"], summary="Presets with their full configs")
def list_presets() -> list[PresetOut]:
    return runs.presets()
