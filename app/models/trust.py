"""Tutor trust: each quarantine and lift of a tutor (the trainer's ``trust`` events, ``opcod_core.trust_run``).

Why a table of changes and no table of states: a change is what the trainer reports and what a reader
needs (when a tutor was muted, by whom, why); the quarantine periods of a run are its changes in order
(``app.services.trust``), and the evidence behind them is the stored break probes (``break_sample``).
A human change names the run-level override that made it (``override_id``; the override row is the audit
record of the request, this row the record of what it changed).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import SOURCES, TRUST_ACTIONS, Base, _created, _in, _run_fk


class TrustChange(Base):
    """One ``trust`` event: ``tutor`` quarantined or lifted from global step ``step`` on, automatically (from
    the break probes) or by a person (``override_id``)."""

    __tablename__ = "trust_change"
    __table_args__ = (
        CheckConstraint(_in("action", TRUST_ACTIONS), name="action"),
        CheckConstraint(_in("source", SOURCES), name="source"),
        Index("ix_trust_change_run_id_id", "run_id", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = _run_fk()
    tutor: Mapped[str] = mapped_column(String(100))
    action: Mapped[str] = mapped_column(String(16))       # quarantine | lift
    source: Mapped[str] = mapped_column(String(16))       # auto | human
    step: Mapped[int] = mapped_column(Integer)            # the global step from which it holds
    round: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(Text, default="")
    domain: Mapped[str | None] = mapped_column(String(100))  # the domain that triggered an automatic quarantine
    # the run-level override of a human change (NULL: automatic). No foreign key, like ``exchange.override_id``:
    # the recorder stores what the trainer reported, and a key it could not satisfy would fail the step's batch
    override_id: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[datetime] = _created()
