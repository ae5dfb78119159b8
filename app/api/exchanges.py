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
def list_exchanges(run_id: int, db: Db, query: Annotated[exchanges.ExchangeListQuery, Query()]) -> ExchangePage:
    return exchanges.list_exchanges(db, run_id, query.filters(), cursor=query.cursor, limit=query.limit)


@router.get("/exchanges/{exchange_id}", response_model=ExchangeDetail,
            summary="One exchange: prompt, rollout, feedback, teacher context, per-token arrays, gate, audit")
def get_exchange(exchange_id: int, db: Db) -> ExchangeDetail:
    return exchanges.get_exchange_detail(db, exchange_id)
