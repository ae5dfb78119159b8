"""The declarative base every table shares: constraint naming, column types, CHECK helpers.

Constraint names follow ``NAMING_CONVENTION`` so migrations (and batch mode on SQLite) are stable;
status columns carry CHECK constraints built from the domain vocabulary (``opcod_core.vocabulary``), so a
new status is added in one place (plus a migration).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, MetaData
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from app.types import JSONType, UTCDateTime, utcnow
from opcod_core.vocabulary import (ApprovalStatus, DecisionSource, FeedbackSource, GateDecision, OverrideStatus,
                                   ReplayStatus, RunAction, RunStatus, TrustAction, values)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_N_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# CHECK constraints from the domain vocabulary (opcod_core.vocabulary): the schema keeps its constraints
# and their names, and a new status is added in one place (plus a migration).
RUN_STATUSES = values(RunStatus)
RUN_ACTIONS = values(RunAction)
GATE_DECISIONS = values(GateDecision)
SOURCES = values(DecisionSource)
FEEDBACK_SOURCES = values(FeedbackSource)
OVERRIDE_STATUSES = values(OverrideStatus)
APPROVAL_STATUSES = values(ApprovalStatus)
REPLAY_STATUSES = values(ReplayStatus)
TRUST_ACTIONS = values(TrustAction)


def _in(column: str, values: tuple[str, ...], nullable: bool = False) -> str:
    allowed = ", ".join(f"'{v}'" for v in values)
    return f"{column} IN ({allowed})" + (f" OR {column} IS NULL" if nullable else "")


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSONType, list[Any]: JSONType}


def _run_fk() -> Mapped[int]:
    return mapped_column(ForeignKey("run.id", ondelete="CASCADE"), nullable=False)


def _created() -> Mapped[datetime]:
    return mapped_column(default=utcnow, nullable=False)
