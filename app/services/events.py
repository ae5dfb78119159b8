"""The event log of a run, read in id order after a client's last id (what the SSE endpoint streams)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from app.db import session_scope
from app.models import Event, Run
from app.services import MAX_ID, SessionFactory, get_run
from opcod_core.vocabulary import FINAL_RUN_STATUSES

BATCH = 500


def check_run(db: SessionFactory, run_id: int) -> None:
    """404 before a stream starts."""
    with session_scope(db) as s:
        get_run(s, run_id)


def events_after(db: SessionFactory, run_id: int, after_id: int, limit: int = BATCH) -> tuple[list[dict[str, Any]], str | None]:
    """``(events with id > after_id, oldest first; the run's status)``. The status is read *before*
    the events, so when it is final and no event comes back, nothing more will ever come."""
    after_id = max(0, min(after_id, MAX_ID))
    with session_scope(db) as s:
        status = s.scalar(select(Run.status).where(Run.id == run_id))
        rows = s.scalars(select(Event).where(Event.run_id == run_id, Event.id > after_id)
                         .order_by(Event.id).limit(limit)).all()
        return [{"id": e.id, "run_id": e.run_id, "type": e.type, "ref_id": e.ref_id, "payload": e.payload,
                 "created_at": e.created_at.isoformat()} for e in rows], status


def is_final(status: str | None) -> bool:
    return status is None or status in FINAL_RUN_STATUSES
