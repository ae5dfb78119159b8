"""/api/v1 control requests: overrides (exchange- and run-level), approvals, replays."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response

from app.api.deps import get_db, get_settings, link_next
from app.schemas import (
    ApprovalDecisionIn,
    ApprovalOut,
    ExchangeOverrideIn,
    OverrideOut,
    ReplayIn,
    ReplayOut,
    RunOverrideIn,
)
from app.services import SessionFactory, approvals, overrides, replays
from opcod_core.vocabulary import ApprovalStatus, OverrideStatus, values

router = APIRouter(tags=["controls"])
Db = Annotated[SessionFactory, Depends(get_db)]


@router.post("/exchanges/{exchange_id}/override", status_code=201, response_model=OverrideOut,
             summary="Edit, reject or approve an exchange's feedback (applied at the tutee's next step)")
def override_exchange(exchange_id: int, req: ExchangeOverrideIn, db: Db) -> OverrideOut:
    return overrides.create_exchange_override(db, exchange_id, req)


@router.post("/runs/{run_id}/overrides", status_code=201, response_model=OverrideOut,
             summary="Run-level override: force/mute/clear, quarantine or lift a tutor, set tau or the gating mode")
def override_run(run_id: int, req: RunOverrideIn, db: Db) -> OverrideOut:
    return overrides.create_run_override(db, run_id, req)


@router.get("/runs/{run_id}/overrides", response_model=list[OverrideOut], summary="A run's overrides (audit log)")
def list_overrides(run_id: int, db: Db, request: Request, response: Response,
                   status: Literal[values(OverrideStatus)] | None = None,  # type: ignore[valid-type]
                   after_id: int = Query(0, ge=0, le=2**63 - 1), limit: int = Query(500, ge=1, le=1000)) -> list[OverrideOut]:
    items, nxt = overrides.list_overrides(db, run_id, status, after_id, limit)
    link_next(request, response, after_id=nxt)
    return items


@router.get("/overrides/{override_id}", response_model=OverrideOut, summary="One override and whether it was applied")
def get_override(override_id: int, db: Db) -> OverrideOut:
    return overrides.get_override(db, override_id)


@router.get("/runs/{run_id}/approvals", response_model=list[ApprovalOut],
            summary="Feedback waiting for a human (manual approval mode); ?status=all for every decision")
def list_approvals(run_id: int, db: Db, request: Request, response: Response,
                   status: Literal[(*values(ApprovalStatus), "all")] = "pending",  # type: ignore[valid-type]
                   after_id: int = Query(0, ge=0, le=2**63 - 1), limit: int = Query(500, ge=1, le=1000)) -> list[ApprovalOut]:
    items, nxt = approvals.list_approvals(db, run_id, None if status == "all" else status, after_id, limit)
    link_next(request, response, after_id=nxt)
    return items


@router.post("/approvals/{approval_id}", response_model=ApprovalOut, summary="Decide a pending approval")
def decide_approval(approval_id: int, req: ApprovalDecisionIn, db: Db) -> ApprovalOut:
    return approvals.decide(db, approval_id, req)


@router.post("/exchanges/{exchange_id}/replay", status_code=202, response_model=ReplayOut,
             summary="Queue a replay with edited feedback and/or another tutor checkpoint")
def create_replay(exchange_id: int, req: ReplayIn, request: Request, db: Db) -> ReplayOut:
    return replays.create_replay(db, exchange_id, req, get_settings(request).max_open_replays)


@router.get("/replays/{replay_id}", response_model=ReplayOut, summary="A replay's status and result")
def get_replay(replay_id: int, db: Db) -> ReplayOut:
    return replays.get_replay(db, replay_id)
