"""/api/v1 exchanges: filtered keyset pages of a run's exchanges, and one exchange with everything."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from app.api.deps import get_db
from app.schemas import ExchangeDetail, ExchangePage
from app.services import SessionFactory, exchanges

router = APIRouter(tags=["exchanges"])
Db = Annotated[SessionFactory, Depends(get_db)]


@router.get("/runs/{run_id}/exchanges", response_model=ExchangePage,
            summary="A run's exchanges, newest first, filtered; pass next_cursor back as cursor")
def list_exchanges(
    run_id: int, db: Db,
    domain: str | None = Query(None, max_length=100),
    round: int | None = Query(None, ge=0, le=2**31 - 1),
    direction: int | None = Query(None, ge=1, le=2),
    category: str | None = Query(None, max_length=32),
    correct: bool | None = None,
    human_edited: bool | None = None,
    tutee: str | None = Query(None, max_length=100),
    cursor: str | None = Query(None, max_length=200),
    limit: int = Query(50, ge=1, le=500),
) -> ExchangePage:
    filters = exchanges.ExchangeFilters(domain=domain, round=round, direction=direction, category=category,
                                        correct=correct, human_edited=human_edited, tutee=tutee)
    return exchanges.list_exchanges(db, run_id, filters, cursor=cursor, limit=limit)


@router.get("/exchanges/{exchange_id}", response_model=ExchangeDetail,
            summary="One exchange: prompt, rollout, feedback, teacher context, per-token arrays, gate, audit")
def get_exchange(exchange_id: int, db: Db) -> ExchangeDetail:
    return exchanges.get_exchange_detail(db, exchange_id)
