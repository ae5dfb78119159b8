"""Exchanges: keyset-paged lists (newest first, filtered) and one exchange with everything.

Paging is ``WHERE run_id = ? [AND <filter> = ?] AND id < :before ORDER BY id DESC LIMIT :n`` on the
indexes ``(run_id, <filter>, id)``: constant cost per page whatever the depth, no OFFSET, and stable
while a worker appends (new rows have larger ids, so they never shift a page already handed out).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.db import session_scope
from app.models import Exchange, GateRecord, Override, Replay
from app.schemas import (
    ExchangeDetail,
    ExchangeItem,
    ExchangePage,
    FeedbackOut,
    GateOut,
    OverrideOut,
    PromptOut,
    ReplayOut,
    RolloutOut,
)
from app.services import SessionFactory, decode_cursor, encode_cursor, get_exchange, get_run


@dataclass(frozen=True)
class ExchangeFilters:
    domain: str | None = None
    round: int | None = None
    direction: int | None = None
    category: str | None = None
    correct: bool | None = None
    human_edited: bool | None = None
    tutee: str | None = None

    def clauses(self) -> list[Any]:
        out = []
        for name in ("domain", "round", "direction", "category", "correct", "human_edited", "tutee"):
            value = getattr(self, name)
            if value is not None:
                out.append(getattr(Exchange, name) == value)
        return out


def exchange_query(run_id: int, filters: ExchangeFilters, before: int | None):
    q = select(Exchange).where(Exchange.run_id == run_id, *filters.clauses())
    if before is not None:
        q = q.where(Exchange.id < before)
    return q.order_by(Exchange.id.desc())


def list_exchanges(db: SessionFactory, run_id: int, filters: ExchangeFilters, cursor: str | None = None,
                   limit: int = 50) -> ExchangePage:
    before = decode_cursor(cursor)
    with session_scope(db) as s:
        get_run(s, run_id)
        rows = list(s.scalars(exchange_query(run_id, filters, before).limit(limit + 1)))
        more = len(rows) > limit
        rows = rows[:limit]
        return ExchangePage(items=[ExchangeItem.model_validate(r) for r in rows],
                            next_cursor=encode_cursor(rows[-1].id) if more and rows else None)


def tutor_gate(session: Session, ex: Exchange) -> GateRecord | None:
    """The newest gate record of the exchange's tutor in its round (re-decisions after overrides win)."""
    return session.scalars(select(GateRecord).where(
        GateRecord.run_id == ex.run_id, GateRecord.round == ex.round, GateRecord.student == ex.tutor)
        .order_by(GateRecord.id.desc()).limit(1)).first()


def detail(session: Session, ex: Exchange) -> ExchangeDetail:
    gate = tutor_gate(session, ex)
    overrides = session.scalars(select(Override).where(Override.exchange_id == ex.id).order_by(Override.id)).all()
    provenance = session.get(Override, ex.override_id) if ex.override_id is not None else None
    derived = session.scalars(select(Exchange.id).where(Exchange.origin_exchange_id == ex.id)
                              .order_by(Exchange.id)).all()
    replays = session.scalars(select(Replay).where(Replay.exchange_id == ex.id).order_by(Replay.id)).all()
    base = {name: getattr(ex, name) for name in ExchangeDetail.model_fields
            if name not in ("prompt", "rollout", "feedback", "gate", "overrides", "provenance",
                            "derived_exchange_ids", "replays")}
    return ExchangeDetail.model_validate({
        **base,
        "prompt": PromptOut.model_validate(ex.rollout.prompt),
        "rollout": RolloutOut.model_validate(ex.rollout),
        "feedback": FeedbackOut.model_validate(ex.feedback) if ex.feedback is not None else None,
        "gate": GateOut.model_validate(gate) if gate is not None else None,
        "overrides": [OverrideOut.model_validate(o) for o in overrides],
        "provenance": OverrideOut.model_validate(provenance) if provenance is not None else None,
        "derived_exchange_ids": list(derived),
        "replays": [ReplayOut.model_validate(r) for r in replays],
    })


def get_exchange_detail(db: SessionFactory, exchange_id: int) -> ExchangeDetail:
    with session_scope(db) as s:
        return detail(s, get_exchange(s, exchange_id))

