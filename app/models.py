"""The ORM: every table the server and the workers share (DESIGN section 4; the migrations build them).

Why it looks like this:
- The trainer reports everything as events (``opcod_core.trainer``: run_start, gate, exchange, step,
  eval, break, checkpoint, override, replay, finish, resume). Columns mirror those events' fields so a
  worker stores exactly what the trainer reported and the dashboard shows exactly what was stored.
- An exchange event is split into its natural parts: ``prompt`` (the dataset item, once per run),
  ``rollout`` (the tutee's sample), ``feedback`` (what the tutor wrote and what became of it) and
  ``exchange`` (the tutoring unit: chosen sibling s, rendered teacher context, per-token arrays, loss).
- List views page newest-first by keyset (``WHERE run_id = ? [AND filter = ?] AND id < cursor ORDER
  BY id DESC``), never OFFSET; every such index ends with ``id`` so it serves both filter and order.
- Every foreign key inside a run cascades on delete and is indexed (PostgreSQL checks referencing rows
  on delete; an unindexed key turns deleting a run into a scan per row).
- High-volume tables use 64-bit ids (``BigId``); ``event.id`` is the SSE ``Last-Event-ID`` and is
  AUTOINCREMENT on SQLite so an id is never reused.
- Constraint names follow ``NAMING_CONVENTION`` so migrations (and batch mode on SQLite) are stable.
- Status columns carry CHECK constraints for the values listed in the ``*_STATUSES`` tuples below.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from app.types import BigId, FloatArray, IntArray, JSONType, UTCDateTime, utcnow
from opcod_core.vocabulary import (ApprovalStatus, DecisionSource, FeedbackSource, GateDecision, OverrideStatus,
                                   ReplayStatus, RunAction, RunStatus, values)

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

    students: Mapped[list[Student]] = relationship(
        back_populates="run", order_by="Student.position", cascade="all, delete-orphan", passive_deletes=True)


class Student(Base):
    __tablename__ = "student"
    __table_args__ = (
        UniqueConstraint("run_id", "name"),
        UniqueConstraint("run_id", "position"),
        CheckConstraint("position IN (0, 1)", name="position"),
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
    created_at: Mapped[datetime] = _created()


class Prompt(Base):
    """A dataset item used by a run (stored once per run, keyed by the dataset's item id)."""

    __tablename__ = "prompt"
    __table_args__ = (UniqueConstraint("run_id", "item_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = _run_fk()
    item_key: Mapped[str] = mapped_column(String(255))
    domain: Mapped[str] = mapped_column(String(100))
    split: Mapped[str | None] = mapped_column(String(16))
    answer_type: Mapped[str] = mapped_column(String(16), default="mcq")
    question: Mapped[str] = mapped_column(Text)
    choices: Mapped[list[Any]] = mapped_column(default=list)
    labels: Mapped[list[Any]] = mapped_column(default=list)
    gold: Mapped[str] = mapped_column(Text)


class Rollout(Base):
    """One on-policy sample of the tutee; ``token_ids`` packed as int32."""

    __tablename__ = "rollout"
    __table_args__ = (
        Index("ix_rollout_run_id_step_id", "run_id", "step_id"),
        Index("ix_rollout_step_id", "step_id"),
        Index("ix_rollout_prompt_id", "prompt_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    run_id: Mapped[int] = _run_fk()
    step_id: Mapped[int] = mapped_column(ForeignKey("step.id", ondelete="CASCADE"))
    student: Mapped[str] = mapped_column(String(100))
    prompt_id: Mapped[int] = mapped_column(ForeignKey("prompt.id", ondelete="CASCADE"))
    prompt_index: Mapped[int | None] = mapped_column(Integer)
    rollout_index: Mapped[int | None] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    token_ids: Mapped[list[int]] = mapped_column(IntArray)
    answer: Mapped[str | None] = mapped_column(Text)
    correct: Mapped[bool] = mapped_column(Boolean)

    step_row: Mapped[Step] = relationship()
    prompt: Mapped[Prompt] = relationship()


class Feedback(Base):
    """What the tutor (or a human) wrote on a rollout, its anchoring category and what was used."""

    __tablename__ = "feedback"
    __table_args__ = (
        CheckConstraint(_in("source", FEEDBACK_SOURCES), name="source"),
        Index("ix_feedback_rollout_id", "rollout_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    rollout_id: Mapped[int] = mapped_column(BigId, ForeignKey("rollout.id", ondelete="CASCADE"))
    tutor: Mapped[str] = mapped_column(String(100))
    raw: Mapped[str | None] = mapped_column(Text)
    concept: Mapped[str | None] = mapped_column(Text)
    category: Mapped[str | None] = mapped_column(String(32))  # kept | no_match | no_concept_tag | empty | all_generic
    sanitised: Mapped[str | None] = mapped_column(Text)
    redactions: Mapped[list[Any]] = mapped_column(default=list)
    used_text: Mapped[str | None] = mapped_column(Text)  # the text the self-teacher saw, if any
    source: Mapped[str] = mapped_column(String(16), default="model")
    approval: Mapped[str | None] = mapped_column(String(16))  # manual mode: approve | reject | edit | ...

    rollout: Mapped[Rollout] = relationship()


class Exchange(Base):
    """The tutoring unit: rollout + chosen sibling s + feedback + teacher context + per-token arrays.

    ``key`` is the trainer's stable exchange key (unique per run): what overrides, approvals, break
    samples and replays refer to, and what makes a resumed run's writes idempotent.
    """

    __tablename__ = "exchange"
    __table_args__ = (
        UniqueConstraint("run_id", "key"),
        Index("ix_exchange_run_id_id", "run_id", "id"),
        Index("ix_exchange_run_id_domain_id", "run_id", "domain", "id"),
        Index("ix_exchange_run_id_round_id", "run_id", "round", "id"),
        Index("ix_exchange_run_id_direction_id", "run_id", "direction", "id"),
        Index("ix_exchange_run_id_category_id", "run_id", "category", "id"),
        Index("ix_exchange_run_id_correct_id", "run_id", "correct", "id"),
        Index("ix_exchange_run_id_human_edited_id", "run_id", "human_edited", "id"),
        Index("ix_exchange_step_id", "step_id"),
        Index("ix_exchange_rollout_id", "rollout_id"),
        Index("ix_exchange_feedback_id", "feedback_id"),
        Index("ix_exchange_origin_exchange_id", "origin_exchange_id"),
        Index("ix_exchange_override_id", "override_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    run_id: Mapped[int] = _run_fk()
    key: Mapped[str] = mapped_column(String(255))
    step_id: Mapped[int] = mapped_column(ForeignKey("step.id", ondelete="CASCADE"))
    rollout_id: Mapped[int] = mapped_column(BigId, ForeignKey("rollout.id", ondelete="CASCADE"))
    feedback_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("feedback.id", ondelete="SET NULL"))
    round: Mapped[int] = mapped_column(Integer)
    direction: Mapped[int] = mapped_column(SmallInteger)
    global_step: Mapped[int] = mapped_column(Integer)
    tutee: Mapped[str] = mapped_column(String(100))
    tutor: Mapped[str] = mapped_column(String(100))
    domain: Mapped[str] = mapped_column(String(100))
    correct: Mapped[bool] = mapped_column(Boolean)
    category: Mapped[str | None] = mapped_column(String(32))
    human_edited: Mapped[bool] = mapped_column(Boolean, default=False)
    origin_exchange_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("exchange.id", ondelete="SET NULL"))
    # The override that produced this (human) exchange. No foreign key: override.exchange_id already
    # points here, and a cycle of keys would need ALTER TABLE, which SQLite cannot do.
    override_id: Mapped[int | None] = mapped_column(Integer)
    s_index: Mapped[int | None] = mapped_column(Integer)
    s_text: Mapped[str | None] = mapped_column(Text)
    context_used: Mapped[str] = mapped_column(String(8))  # s+f | s | f | none
    # how the rollout ended: eos | stop | length (None: stored before it was recorded)
    finish_reason: Mapped[str | None] = mapped_column(String(16))
    skipped: Mapped[bool] = mapped_column(Boolean, default=False)
    teacher_context: Mapped[str | None] = mapped_column(Text)
    tokens: Mapped[list[Any] | None]  # token strings of the rollout, for the heatmap
    student_logprob: Mapped[list[float] | None] = mapped_column(FloatArray)
    divergence: Mapped[list[float] | None] = mapped_column(FloatArray)
    divergence_s_only: Mapped[list[float] | None] = mapped_column(FloatArray)
    loss: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = _created()

    step_row: Mapped[Step] = relationship()
    rollout: Mapped[Rollout] = relationship()
    feedback: Mapped[Feedback | None] = relationship()


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


class BreakSample(Base):
    """A break-rate probe (``break`` event, ``opcod_core.breakrate``): the self-teacher's greedy answer
    with its real context (``context``: s+f or f) and with the same context without f (``baseline``:
    "s", or "none" = the bare question). Break rate = broken / rows with ``correct_without_f``."""

    __tablename__ = "break_sample"
    __table_args__ = (Index("ix_break_sample_run_id_id", "run_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = _run_fk()
    exchange_key: Mapped[str] = mapped_column(String(255))
    round: Mapped[int] = mapped_column(Integer)
    direction: Mapped[int] = mapped_column(SmallInteger)
    global_step: Mapped[int] = mapped_column(Integer)
    tutee: Mapped[str] = mapped_column(String(100))
    tutor: Mapped[str] = mapped_column(String(100))
    tutor_cognizant: Mapped[bool] = mapped_column(Boolean)
    difficulty: Mapped[str] = mapped_column(String(32))
    context: Mapped[str | None] = mapped_column(String(8))
    baseline: Mapped[str | None] = mapped_column(String(8))
    correct_with_f: Mapped[bool] = mapped_column(Boolean)
    correct_without_f: Mapped[bool] = mapped_column(Boolean)
    broken: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = _created()


class Override(Base):
    """A human control request, audited: run-level (exchange_id NULL) or on one exchange's feedback."""

    __tablename__ = "override"
    __table_args__ = (
        CheckConstraint(_in("status", OVERRIDE_STATUSES), name="status"),
        Index("ix_override_run_id_status_id", "run_id", "status", "id"),
        Index("ix_override_exchange_id", "exchange_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = _run_fk()
    exchange_id: Mapped[int | None] = mapped_column(BigId, ForeignKey("exchange.id", ondelete="CASCADE"))
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
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = _run_fk()
    exchange_id: Mapped[int] = mapped_column(BigId, ForeignKey("exchange.id", ondelete="CASCADE"))
    inputs: Mapped[dict[str, Any]] = mapped_column(default=dict)  # feedback, tutor_checkpoint
    status: Mapped[str] = mapped_column(String(16), default="queued")
    result: Mapped[dict[str, Any] | None]
    error: Mapped[str | None] = mapped_column(Text)
    worker_id: Mapped[int | None] = mapped_column(ForeignKey("worker.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = _created()
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]


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
