"""Exchanges: keyset-paged lists (newest first, filtered) and one exchange with everything.

Paging is ``WHERE run_id = ? [AND <filter> = ?] AND id < :before ORDER BY id DESC LIMIT :n`` on the
indexes ``(run_id, <filter>, id)``: constant cost per page whatever the depth, no OFFSET, and stable
while a worker appends (new rows have larger ids, so they never shift a page already handed out).
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlalchemy import select
from sqlalchemy.orm import Session

from opcod_core.peer_config import MAX_PEERS

from app.db import session_scope
from app.exchange_events import feedback_used, ordered_feedback
from app.models import Exchange, Feedback, GateRecord, Override, Replay
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
from app.services import SessionFactory, decode_cursor, encode_cursor, get_exchange, get_run, keyset_page
from app.services.reads import list_options
from opcod_core.vocabulary import ANCHORING_CATEGORIES


#: The ``category`` filter value that selects exchanges without feedback (no tutor wrote any).
NO_FEEDBACK = "none"


class ExchangeFilters(BaseModel):
    """The filters of an exchange list: the API's ``GET /runs/{id}/exchanges`` and the exchanges page
    share them (FastAPI query model). An empty value (a form's "any") means no filter."""

    model_config = ConfigDict(frozen=True)

    domain: str | None = Field(None, max_length=100)
    round: int | None = Field(None, ge=0, le=2**31 - 1)
    direction: int | None = Field(None, ge=1, le=MAX_PEERS, description="a direction of the round: one per "
                                  "student as tutee (1 to the number of students)")
    category: str | None = Field(None, description=f"an anchoring category, or '{NO_FEEDBACK}' for "
                                 "exchanges without feedback", json_schema_extra={"enum": [*ANCHORING_CATEGORIES, NO_FEEDBACK]})
    correct: bool | None = None
    human_edited: bool | None = None
    tutee: str | None = Field(None, max_length=100)
    tutor: str | None = Field(None, max_length=100, description="the exchange's own (leading) tutor")
    feedback_from: str | None = Field(None, max_length=100, description="a tutor whose feedback is on the rollout "
                                      "(leading or beside the leading tutor's, routing mode all; not shadow)")

    @model_validator(mode="before")
    @classmethod
    def _empty_is_none(cls, data: Any) -> Any:
        return {k: v for k, v in data.items() if v != ""} if isinstance(data, dict) else data

    @field_validator("category")
    @classmethod
    def _known_category(cls, v: str | None) -> str | None:
        if v is not None and v not in (*ANCHORING_CATEGORIES, NO_FEEDBACK):
            raise ValueError(f"one of {[*ANCHORING_CATEGORIES, NO_FEEDBACK]}")
        return v

    def filters(self) -> "ExchangeFilters":
        """Just the filters (a page or API query model adds its paging fields)."""
        return ExchangeFilters(**self.model_dump(include=set(ExchangeFilters.model_fields)))

    def clauses(self) -> list[Any]:
        out = []
        for name in ("domain", "round", "direction", "correct", "human_edited", "tutee", "tutor"):
            value = getattr(self, name)
            if value is not None:
                out.append(getattr(Exchange, name) == value)
        if self.category is not None:
            out.append(Exchange.category.is_(None) if self.category == NO_FEEDBACK else Exchange.category == self.category)
        if self.feedback_from is not None:
            out.append(select(Feedback.id).where(Feedback.rollout_id == Exchange.rollout_id, Feedback.shadow.is_(False),
                                                 Feedback.tutor == self.feedback_from).exists())
        return out

    def active(self) -> bool:
        return bool(self.clauses())

    def query_items(self) -> list[tuple[str, str]]:
        """The filters as query-string pairs (links that keep them)."""
        return [(k, ("true" if v else "false") if isinstance(v, bool) else str(v))
                for k, v in self.model_dump(include=set(ExchangeFilters.model_fields)).items() if v is not None]


class ExchangeListQuery(ExchangeFilters):
    """``GET /api/v1/runs/{id}/exchanges``: the filters plus an opaque cursor and a page size."""

    cursor: str | None = Field(None, max_length=200)
    limit: int = Field(50, ge=1, le=500)


def exchange_query(run_id: int, filters: ExchangeFilters):
    return select(Exchange).options(*list_options()).where(Exchange.run_id == run_id, *filters.clauses())


def list_exchanges(db: SessionFactory, run_id: int, filters: ExchangeFilters, cursor: str | None = None,
                   limit: int = 50) -> ExchangePage:
    before = decode_cursor(cursor)
    with session_scope(db) as s:
        get_run(s, run_id)
        rows, more = keyset_page(s, exchange_query(run_id, filters), Exchange.id, limit, before=before)
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
    feedbacks = ordered_feedback(ex)
    base = {name: getattr(ex, name) for name in ExchangeDetail.model_fields
            if name not in ("prompt", "rollout", "feedback", "feedbacks", "feedback_used", "gate", "overrides", "provenance",
                            "derived_exchange_ids", "replays")}
    return ExchangeDetail.model_validate({
        **base,
        "prompt": PromptOut.model_validate(ex.rollout.prompt),
        "rollout": RolloutOut.model_validate(ex.rollout),
        "feedback": FeedbackOut.model_validate(ex.feedback) if ex.feedback is not None else None,
        "feedbacks": [FeedbackOut.model_validate(f) for f in feedbacks],
        "feedback_used": feedback_used(ex, feedbacks),
        "gate": GateOut.model_validate(gate) if gate is not None else None,
        "overrides": [OverrideOut.model_validate(o) for o in overrides],
        "provenance": OverrideOut.model_validate(provenance) if provenance is not None else None,
        "derived_exchange_ids": list(derived),
        "replays": [ReplayOut.model_validate(r) for r in replays],
    })


def get_exchange_detail(db: SessionFactory, exchange_id: int) -> ExchangeDetail:
    with session_scope(db) as s:
        return detail(s, get_exchange(s, exchange_id))

