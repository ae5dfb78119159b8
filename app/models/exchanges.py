"""The tutoring exchanges: an exchange event split into its natural parts (prompt, rollout, feedback,
exchange) and the break-rate probes made on them.

N peers (issue 17, migration 0010): an exchange may carry the feedback of several tutors (routing mode
``all``) and of quarantined tutors writing in the shadow. Each tutor's feedback is one ``feedback`` row on
the exchange's rollout; ``exchange.feedback_id`` stays the primary one (the exchange's own tutor, as with two
peers), the others share its ``rollout_id``. ``exchange.tutors`` / ``quarantined`` / ``route_reason`` keep
the route (``opcod_core.routing.Route``); all three are NULL for an exchange without N-peer fields (a
two-peer run without quarantine), which is stored exactly as before.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (Boolean, CheckConstraint, Float, ForeignKey, Index, Integer, SmallInteger, String, Text,
                        UniqueConstraint, false)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import FEEDBACK_SOURCES, Base, _created, _in, _run_fk
from app.models.runs import Step
from app.types import BigId, FloatArray, IntArray


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
    # every tutor's feedback on this rollout, in the order the trainer reported it (the primary one first)
    feedbacks: Mapped[list["Feedback"]] = relationship(order_by="Feedback.id", viewonly=True)


class Feedback(Base):
    """What a tutor (or a human) wrote on a rollout, its anchoring category and what was used. A rollout has
    one per tutor that wrote (N peers); ``shadow``: a quarantined tutor's, stored and probed, never used;
    ``poisoned``: a benchmark fault replaced what the tutor wrote (``opcod_core.faults``, migration 0013)."""

    __tablename__ = "feedback"
    __table_args__ = (
        CheckConstraint(_in("source", FEEDBACK_SOURCES), name="source"),
        # the rollout's rows; with shadow, the flow matrix's join tells the rows it counts from the index entry
        Index("ix_feedback_rollout_id_shadow", "rollout_id", "shadow"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    rollout_id: Mapped[int] = mapped_column(BigId, ForeignKey("rollout.id", ondelete="CASCADE"))
    tutor: Mapped[str] = mapped_column(String(100))
    raw: Mapped[str | None] = mapped_column(Text)
    concept: Mapped[str | None] = mapped_column(Text)
    category: Mapped[str | None] = mapped_column(String(32))  # kept | no_match | no_concept_tag | empty | all_generic
    sanitised: Mapped[str | None] = mapped_column(Text)
    redactions: Mapped[list[Any]] = mapped_column(default=list)
    used_text: Mapped[str | None] = mapped_column(Text)  # this tutor's part of the f the self-teacher saw, if any
    source: Mapped[str] = mapped_column(String(16), default="model")
    approval: Mapped[str | None] = mapped_column(String(16))  # manual mode: approve | reject | edit | ...
    shadow: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    poisoned: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

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
        Index("ix_exchange_run_id_tutee_id", "run_id", "tutee", "id"),
        Index("ix_exchange_run_id_tutor_id", "run_id", "tutor", "id"),
        # covers the tutoring-flow matrix's GROUP BY (app.services.flows): read from the index alone, in
        # its order (929 -> 82 ms at 200,000 exchanges on SQLite; named by hand: the convention's name would
        # pass PostgreSQL's 63-character limit); rollout_id and feedback_id cover its join to every tutor's
        # feedback rows (migration 0011)
        Index("ix_exchange_run_id_flows", "run_id", "tutor", "tutee", "domain", "round", "category",
              "human_edited", "rollout_id", "feedback_id"),
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
    # N peers (module docstring): the tutors whose feedback the teacher used (best first), the quarantined
    # tutors that wrote in the shadow, and why the question went to them; NULL without N-peer fields
    tutors: Mapped[list[Any] | None]
    quarantined: Mapped[list[Any] | None]
    route_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = _created()

    step_row: Mapped[Step] = relationship()
    rollout: Mapped[Rollout] = relationship()
    feedback: Mapped[Feedback | None] = relationship()


class BreakSample(Base):
    """A break-rate probe (``break`` event, ``opcod_core.breakrate``): the self-teacher's greedy answer
    with its real context (``context``: s+f or f) and with the same context without f (``baseline``:
    "s", or "none" = the bare question). Break rate = broken / rows with ``correct_without_f``.
    ``domain``: of the tutee's question, as the break event carries it (what tutor trust counts by; kept on
    the probe, not joined from its exchange, so that trust reads ``ix_break_sample_run_id_trust`` alone; NULL
    on probes stored before migration 0010 whose exchange is not stored); ``shadow``: the probed feedback is
    a quarantined tutor's."""

    __tablename__ = "break_sample"
    __table_args__ = (
        Index("ix_break_sample_run_id_id", "run_id", "id"),
        # covers the break-rate summary's GROUP BY (app.services.metrics.break_summary): 85 -> 27 ms at
        # 62,500 probes, read from the index alone
        # (named by hand: the convention's name would pass PostgreSQL's 63-character limit)
        Index("ix_break_sample_run_id_summary", "run_id", "tutor_cognizant", "difficulty", "correct_without_f",
              "broken"),
        # covers tutor trust's GROUP BY (app.services.trust): per tutor, domain and step, read from the index
        Index("ix_break_sample_run_id_trust", "run_id", "tutor", "domain", "global_step", "round",
              "correct_without_f", "broken", "shadow"),
    )

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
    domain: Mapped[str | None] = mapped_column(String(100))
    shadow: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = _created()
