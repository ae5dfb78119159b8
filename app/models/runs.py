"""Runs and what a run's trainer reports per round and step: workers, runs, students, gate records,
steps, evaluations, checkpoints, metrics and the event rows of the SSE stream."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, CheckConstraint, Float, ForeignKey, Index, Integer, SmallInteger, String, Text, UniqueConstraint
from sqlalchemy import false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import GATE_DECISIONS, RUN_ACTIONS, RUN_STATUSES, SOURCES, Base, _created, _in, _run_fk
from app.types import BigId, utcnow


class Worker(Base):
    """A worker process (``opcod worker`` or the one ``opcod serve`` starts)."""

    __tablename__ = "worker"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    hostname: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[datetime] = _created()
    heartbeat_at: Mapped[datetime] = _created()
    status: Mapped[str] = mapped_column(String(16), default="idle")  # idle | busy | stopped


class Run(Base):
    """One training run: its config, lifecycle, the worker holding it and its progress."""

    __tablename__ = "run"
    __table_args__ = (
        CheckConstraint(_in("status", RUN_STATUSES), name="status"),
        CheckConstraint(_in("requested_action", RUN_ACTIONS, nullable=True), name="requested_action"),
        Index("ix_run_status_id", "status", "id"),
        Index("ix_run_worker_id", "worker_id"),
        Index("ix_run_parent_run_id", "parent_run_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    preset: Mapped[str | None] = mapped_column(String(64))
    config: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16), default="queued")
    requested_action: Mapped[str | None] = mapped_column(String(16))
    created_at: Mapped[datetime] = _created()
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow, nullable=False)
    worker_id: Mapped[int | None] = mapped_column(ForeignKey("worker.id", ondelete="SET NULL"))
    heartbeat_at: Mapped[datetime | None]
    error: Mapped[str | None] = mapped_column(Text)
    out_dir: Mapped[str | None] = mapped_column(String(1024))
    next_task: Mapped[int] = mapped_column(Integer, default=0)
    total_tasks: Mapped[int | None] = mapped_column(Integer)
    progress: Mapped[dict[str, Any] | None]  # round, direction, step, global_step
    summary: Mapped[dict[str, Any] | None]
    parent_run_id: Mapped[int | None] = mapped_column(ForeignKey("run.id", ondelete="SET NULL"))
    fork_checkpoint: Mapped[str | None] = mapped_column(String(1024))  # checkpoint path forked from
    takeovers: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # app.worker.claim
    # How many exchange rows the run has, kept by the recorder in the transactions that add or delete them
    # (a COUNT over a million exchanges took 40-90 ms per run page refresh: benchmarks/store_scale.py)
    exchange_count: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    students: Mapped[list[Student]] = relationship(
        back_populates="run", order_by="Student.position", cascade="all, delete-orphan", passive_deletes=True)


class Student(Base):
    __tablename__ = "student"
    __table_args__ = (
        UniqueConstraint("run_id", "name"),
        UniqueConstraint("run_id", "position"),
        CheckConstraint("position BETWEEN 0 AND 7", name="position"),   # 2 to 8 students (migration 0009)
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = _run_fk()
    position: Mapped[int] = mapped_column(SmallInteger)
    name: Mapped[str] = mapped_column(String(100))
    model_ref: Mapped[str] = mapped_column(String(500))
    strong_domain: Mapped[str | None] = mapped_column(String(100))
    tokenizer: Mapped[str | None] = mapped_column(String(500))

    run: Mapped[Run] = relationship(back_populates="students")


class GateRecord(Base):
    """``opcod_core.gating.GateRecord`` plus the split/k it was scored on and why it was re-decided."""

    __tablename__ = "gate_record"
    __table_args__ = (
        CheckConstraint(_in("decision", GATE_DECISIONS), name="decision"),
        CheckConstraint(_in("source", SOURCES), name="source"),
        Index("ix_gate_record_run_id_round_id", "run_id", "round", "id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = _run_fk()
    round: Mapped[int] = mapped_column(Integer)
    student: Mapped[str] = mapped_column(String(100))
    scores: Mapped[dict[str, Any]]
    best: Mapped[dict[str, Any]]
    delta: Mapped[float] = mapped_column(Float)
    tau: Mapped[float] = mapped_column(Float)
    mode: Mapped[str] = mapped_column(String(32))
    decision: Mapped[str] = mapped_column(String(16))
    source: Mapped[str] = mapped_column(String(16), default="auto")
    allowed_domains: Mapped[list[Any] | None]
    reason: Mapped[str] = mapped_column(Text, default="")
    split: Mapped[str | None] = mapped_column(String(16))
    k: Mapped[int | None] = mapped_column(Integer)
    note: Mapped[str | None] = mapped_column(String(64))  # e.g. "override": re-decided after a run override
    # standard errors (opcod_core.gating, "Uncertainty"): bootstrap SE of delta, SE of each domain score,
    # and the validation questions per domain they rest on; NULL for records written before they existed
    delta_se: Mapped[float | None] = mapped_column(Float)
    score_se: Mapped[dict[str, Any] | None]
    n_items: Mapped[dict[str, Any] | None]
    created_at: Mapped[datetime] = _created()


class Step(Base):
    """One optimizer step of the tutee (``step`` event); metrics include the timings (``time/*``)."""

    __tablename__ = "step"
    __table_args__ = (UniqueConstraint("run_id", "global_step"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = _run_fk()
    round: Mapped[int] = mapped_column(Integer)
    direction: Mapped[int] = mapped_column(SmallInteger)
    step: Mapped[int] = mapped_column(Integer)
    global_step: Mapped[int] = mapped_column(Integer)
    tutee: Mapped[str] = mapped_column(String(100))
    tutor: Mapped[str] = mapped_column(String(100))
    loss: Mapped[float | None] = mapped_column(Float)
    metrics: Mapped[dict[str, Any]] = mapped_column(default=dict)
    # mean divergence of the exchanges recorded with this step that trained (app.worker.recorder)
    exchange_divergence: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = _created()


class EvalResult(Base):
    """Test-split avg@k of one student on one domain after a round (round 0 = before training)."""

    __tablename__ = "eval_result"
    __table_args__ = (UniqueConstraint("run_id", "split", "round", "student", "domain"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = _run_fk()
    round: Mapped[int] = mapped_column(Integer)
    student: Mapped[str] = mapped_column(String(100))
    domain: Mapped[str] = mapped_column(String(100))
    split: Mapped[str] = mapped_column(String(16), default="test")
    k: Mapped[int] = mapped_column(Integer)
    accuracy: Mapped[float] = mapped_column(Float)
    n_items: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = _created()


class Checkpoint(Base):
    """A saved trainer state (``checkpoint`` event). A tag can repeat after pause/resume: not unique."""

    __tablename__ = "checkpoint"
    __table_args__ = (Index("ix_checkpoint_run_id_id", "run_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = _run_fk()
    tag: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(String(1024))
    next_task: Mapped[int] = mapped_column(Integer)
    round: Mapped[int | None] = mapped_column(Integer)
    events_before: Mapped[int | None] = mapped_column(Integer)  # trainer events emitted before it (exact resume)
    permanent: Mapped[bool] = mapped_column(Boolean, default=False)
    pruned: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())  # files deleted (retention)
    created_at: Mapped[datetime] = _created()


class Metric(Base):
    """One scalar per (step, key): the flat namespaced metrics (``loss/jsd``, ``gate/delta``, ...)."""

    __tablename__ = "metric"
    __table_args__ = (Index("ix_metric_run_id_key_global_step", "run_id", "key", "global_step"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    run_id: Mapped[int] = _run_fk()
    global_step: Mapped[int] = mapped_column(Integer)
    key: Mapped[str] = mapped_column(String(128))
    value: Mapped[float] = mapped_column(Float)


class Event(Base):
    """The append-only log the SSE endpoint streams (``Last-Event-ID`` = ``id``); small payloads only:
    the stream carries a type and a reference, the client fetches the row it points to."""

    __tablename__ = "event"
    __table_args__ = (Index("ix_event_run_id_id", "run_id", "id"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = _run_fk()
    type: Mapped[str] = mapped_column(String(32))
    ref_id: Mapped[int | None] = mapped_column(BigId)
    payload: Mapped[dict[str, Any]] = mapped_column(default=dict)
    created_at: Mapped[datetime] = _created()


def lock_run(session, run_id: int) -> None:
    """Row-lock the run for the rest of the transaction (PostgreSQL; SQLite serialises writers anyway).

    Every transaction that writes ``event`` rows of a run takes this lock (or the worker's fence, an UPDATE
    of the same row) before its first event insert, so a run's event ids are allocated in commit order:
    without it, a web transaction could take id 101 and commit while the worker's step transaction holding
    id 100 is still open, and a stream that had read 101 would never see 100."""
    from sqlalchemy import select

    session.execute(select(Run.id).where(Run.id == run_id).with_for_update())
