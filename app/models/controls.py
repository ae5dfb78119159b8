"""What people ask of a run while it trains: overrides, approvals of kept feedback, replays."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import APPROVAL_STATUSES, OVERRIDE_STATUSES, REPLAY_STATUSES, Base, _created, _in, _run_fk
from app.types import BigId


class Override(Base):
    """A human control request, audited: run-level (exchange_key NULL) or on one exchange's feedback."""

    __tablename__ = "override"
    __table_args__ = (
        CheckConstraint(_in("status", OVERRIDE_STATUSES), name="status"),
        Index("ix_override_run_id_status_id", "run_id", "status", "id"),
        Index("ix_override_exchange_id", "exchange_id"),
        Index("ix_override_run_id_exchange_key", "run_id", "exchange_key"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = _run_fk()
    # NULL with a key: its exchange was deleted by a resume and is re-linked when redone (app.worker.recorder)
    exchange_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("exchange.id", ondelete="SET NULL"))
    exchange_key: Mapped[str | None] = mapped_column(String(255))  # NULL: a run-level override
    kind: Mapped[str] = mapped_column(String(32))  # force_tutor | mute_tutor | clear_tutor | set_tau | set_mode | edit | reject | approve
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    author: Mapped[str] = mapped_column(String(200), default="human")
    status: Mapped[str] = mapped_column(String(16), default="pending")
    created_at: Mapped[datetime] = _created()
    applied_at: Mapped[datetime | None]
    applied_at_step: Mapped[int | None] = mapped_column(Integer)


class Approval(Base):
    """Manual approval mode: one kept feedback waiting for a human, with a deadline and the decision."""

    __tablename__ = "approval"
    __table_args__ = (
        UniqueConstraint("run_id", "exchange_key"),
        CheckConstraint(_in("status", APPROVAL_STATUSES), name="status"),
        Index("ix_approval_run_id_status_id", "run_id", "status", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = _run_fk()
    exchange_key: Mapped[str] = mapped_column(String(255))
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    text: Mapped[str | None] = mapped_column(Text)
    decided_by: Mapped[str | None] = mapped_column(String(200))
    created_at: Mapped[datetime] = _created()
    decided_at: Mapped[datetime | None]
    deadline: Mapped[datetime | None]


class Replay(Base):
    """Recompute one exchange with edited feedback and/or another tutor checkpoint, on a worker."""

    __tablename__ = "replay"
    __table_args__ = (
        CheckConstraint(_in("status", REPLAY_STATUSES), name="status"),
        Index("ix_replay_run_id_status_id", "run_id", "status", "id"),
        Index("ix_replay_status_id", "status", "id"),
        Index("ix_replay_exchange_id", "exchange_id"),
        Index("ix_replay_worker_id", "worker_id"),
        Index("ix_replay_run_id_exchange_key", "run_id", "exchange_key"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = _run_fk()
    # NULL while its exchange is being redone after a resume (re-linked by key: app.worker.recorder)
    exchange_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("exchange.id", ondelete="SET NULL"))
    exchange_key: Mapped[str | None] = mapped_column(String(255))
    inputs: Mapped[dict[str, Any]] = mapped_column(default=dict)  # feedback, tutor_checkpoint
    status: Mapped[str] = mapped_column(String(16), default="queued")
    result: Mapped[dict[str, Any] | None]
    error: Mapped[str | None] = mapped_column(Text)
    worker_id: Mapped[int | None] = mapped_column(ForeignKey("worker.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = _created()
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
