"""``opcod_core.controls.Controls`` on top of the database: what humans asked for, handed to the trainer.

The trainer calls ``poll(position)`` at every step boundary. One short transaction reads
``run.requested_action`` (pause/cancel written by the web side), the run's ``pending`` overrides and
its ``queued`` replays (claimed here: ``queued`` -> ``running``), and returns them as a
``ControlBatch``. Overrides are not marked applied here: the trainer reports each application as an
``override`` event, and the recorder marks the row ``applied`` (with ``applied_at_step``) in the same
transaction as the step it took effect in, so a crash before that step is recorded leaves it pending
and it is handed over again. Overrides the trainer cannot apply (an unknown student, a bad value, an
exchange of another run) are marked ``rejected`` instead of reaching the trainer. A ``quarantine`` or
``lift`` of a tutor carries its optional reason as the override's ``value``; the trainer's ``trust`` event
(the change it made, if any) is stored by the recorder (``trust_change``).

A worker shutting down (SIGTERM/SIGINT) makes ``poll`` answer ``pause``; the loop then re-queues the
run (``progress.paused_by = "shutdown"``). A human's pause or cancel wins over that.

Manual approval (``decide``): one ``approval`` row per kept feedback (get-or-create by exchange key,
so a step redone after a crash finds the decisions already made), then poll every
``approval_poll_s`` until every row is decided or its deadline passes (then ``timed_out`` and the
config's default action). The wait uses the worker's stop event, so a shutdown interrupts it at
once, and so does a human's pause or cancel: the step is abandoned (``StopRequested``) and redone on
resume, with the same approval rows.
"""

from __future__ import annotations

import logging
import threading
from datetime import timedelta
from pathlib import Path
from typing import Literal

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.db import session_scope
from app.exchange_events import exchange_event
from app.models import Approval, Event, Exchange, Override, Replay, Run
from app.types import utcnow
from app.worker.claim import RunLost, fence
from app.worker.rows import json_safe, storable
from opcod_core.controls import (ApprovalRequest, ControlBatch, Decision, ExchangeOverride, ReplayRequest,
                                 RunOverride)
from opcod_core.events import ExchangeEvent
from opcod_core.gating import GATE_MODES
from opcod_core.vocabulary import (MAX_REASON, TRUST_OVERRIDE_KINDS, TUTOR_OVERRIDE_KINDS, ExchangeOverrideKind,
                                   RunOverrideKind, values)

log = logging.getLogger(__name__)

APPROVAL_DECISIONS: dict[str, str] = {"approved": "approve", "rejected": "reject", "edited": "edit"}


class StopRequested(Exception):
    """The trainer must leave the step it is in (it waits for manual approvals) without finishing it:
    the worker is shutting down (``action`` None) or a human asked to pause or cancel the run. The
    step is redone from the last checkpoint when the run resumes, with the approval rows as decided."""

    def __init__(self, reason: str, action: str | None = None) -> None:
        super().__init__(reason)
        self.action = action


def exchange_payload(s: Session, exchange_id: int) -> ExchangeEvent | None:
    """A stored exchange as the trainer's exchange event (what overrides and replays need)."""
    x = s.get(Exchange, exchange_id)
    return None if x is None else exchange_event(x)


def resolve_tutor_checkpoint(value: str | None, out_dir: Path, tutor: str) -> str | None:
    """A replay's ``tutor_checkpoint``: a student checkpoint directory, or a checkpoint tag of this run
    (``task-000007``), or a run checkpoint directory (the tutor's sub-directory is used)."""
    if not value:
        return None
    p = Path(value)
    for cand in (p, out_dir / "checkpoints" / value):
        if (cand / "model").is_dir():
            return str(cand)
        if (cand / tutor / "model").is_dir():
            return str(cand / tutor)
    return value  # let the core report what is missing


class DBControls:
    def __init__(self, factory: sessionmaker[Session], run_id: int, worker_id: int, *, students: list[str],
                 out_dir: Path, stop: threading.Event, lost: threading.Event | None = None,
                 approval_poll_s: float = 0.5, max_replays: int = 2) -> None:
        self.factory = factory
        self.max_replays = max_replays  # replays served per step boundary (settings.replays_per_step)
        self.run_id = run_id
        self.worker_id = worker_id
        self.students = list(students)
        self.out_dir = Path(out_dir)
        self.stop = stop
        self.lost = lost or threading.Event()
        self.approval_poll_s = approval_poll_s
        self.shutdown = False          # True when the last poll paused because the worker is stopping
        self.last_action: str = "continue"

    # --- between steps ------------------------------------------------------------------------------
    on_progress = None  # called at each step boundary and approval poll (the heartbeat's stall detector)

    def poll(self, position: dict) -> ControlBatch:
        if self.on_progress is not None:
            self.on_progress()
        if self.lost.is_set():
            raise RunLost(self.run_id)
        batch = ControlBatch()
        with session_scope(self.factory) as s:
            fence(s, self.run_id, self.worker_id)
            run = s.get(Run, self.run_id)
            requested = run.requested_action
            # an exchange-level override whose exchange is being redone after a resume waits for it
            for ov in s.scalars(select(Override).where(Override.run_id == self.run_id, Override.status == "pending",
                                                       or_(Override.exchange_key.is_(None),
                                                           Override.exchange_id.is_not(None)))
                                .order_by(Override.id)):
                item = self._override(s, ov)
                if item is None:
                    ov.status = "rejected"
                    s.add(Event(run_id=self.run_id, type="override_rejected", ref_id=ov.id,
                                payload={"kind": ov.kind, "reason": "not applicable to this run"}))
                elif isinstance(item, RunOverride):
                    batch.run_overrides.append(item)
                else:
                    batch.exchange_overrides.append(item)
            for rp in s.scalars(select(Replay).where(Replay.run_id == self.run_id, Replay.status == "queued",
                                                     Replay.exchange_id.is_not(None))
                                .order_by(Replay.id).limit(self.max_replays)):
                ex = exchange_payload(s, rp.exchange_id)
                claimed = s.execute(update(Replay).where(Replay.id == rp.id, Replay.status == "queued")
                                    .values(status="running", worker_id=self.worker_id, started_at=utcnow())
                                    .execution_options(synchronize_session=False)).rowcount == 1
                if not claimed:
                    continue
                if ex is None:
                    rp.status, rp.error, rp.finished_at = "failed", "exchange not found", utcnow()
                    continue
                inputs = rp.inputs or {}
                batch.replays.append(ReplayRequest(
                    str(rp.id), ex, feedback=inputs.get("feedback"),
                    tutor_checkpoint=resolve_tutor_checkpoint(inputs.get("tutor_checkpoint"), self.out_dir,
                                                              ex.tutor)))
        if requested in ("pause", "cancel"):
            batch.action = requested
        elif self.stop.is_set():
            batch.action = "pause"
            self.shutdown = True
        self.last_action = batch.action
        return batch

    def _override(self, s: Session, ov: Override) -> RunOverride | ExchangeOverride | None:
        payload = ov.payload or {}
        if ov.exchange_id is None:
            if ov.kind not in values(RunOverrideKind):
                return None
            if ov.kind in TUTOR_OVERRIDE_KINDS:
                student = payload.get("student")
                if student not in self.students:
                    return None
                if ov.kind in TRUST_OVERRIDE_KINDS:   # value: an optional reason (opcod_core.trust_run)
                    reason = payload.get("value")
                    if reason is not None and not (isinstance(reason, str) and len(reason) <= MAX_REASON):
                        return None
                    return RunOverride(str(ov.id), ov.kind, student=student, value=reason or None, author=ov.author)
                return RunOverride(str(ov.id), ov.kind, student=student, author=ov.author)
            value = payload.get("value")
            if ov.kind == "set_tau":
                if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 10:
                    return None
                return RunOverride(str(ov.id), ov.kind, value=float(value), author=ov.author)
            if value not in GATE_MODES:
                return None
            return RunOverride(str(ov.id), ov.kind, value=value, author=ov.author)
        if ov.kind not in values(ExchangeOverrideKind):
            return None
        ex = exchange_payload(s, ov.exchange_id)
        if ex is None or s.get(Exchange, ov.exchange_id).run_id != self.run_id:
            return None
        text = payload.get("text")
        if ov.kind == "edit" and not (isinstance(text, str) and text.strip()):
            return None
        return ExchangeOverride(str(ov.id), ov.kind, ex, text=text if ov.kind == "edit" else None, author=ov.author)

    # --- manual approval ---------------------------------------------------------------------------------
    def decide(self, pending: list[ApprovalRequest], timeout_s: float,
               default: Literal["approve", "reject"]) -> dict[str, Decision]:
        if not pending:
            return {}
        keys = [p.exchange_id for p in pending]
        self._ask(pending, utcnow() + timedelta(seconds=timeout_s))
        while True:
            if self.lost.is_set():
                raise RunLost(self.run_id)
            if self.on_progress is not None:
                self.on_progress()  # waiting for a person is not a stall
            waiting, decided, expired = self._poll_approvals(keys)
            if expired:
                continue  # re-read the rows just timed out (or decided at the last moment)
            if not waiting:
                break
            if self.stop.is_set():
                raise StopRequested("worker stopping while waiting for approvals")
            next_deadline = min(a.deadline for a in waiting)
            self.stop.wait(max(0.0, min(self.approval_poll_s, (next_deadline - utcnow()).total_seconds())))
        out: dict[str, Decision] = {}
        for key in keys:
            status, text = decided[key]
            out[key] = (default, None) if status == "timed_out" else (APPROVAL_DECISIONS[status], text)  # type: ignore[assignment]
        return out

    def _ask(self, pending: list[ApprovalRequest], deadline) -> None:
        """One pending approval row (and its ``approval`` event) per request not asked before."""
        with session_scope(self.factory) as s:
            fence(s, self.run_id, self.worker_id)
            existing = set(s.scalars(select(Approval.exchange_key).where(
                Approval.run_id == self.run_id, Approval.exchange_key.in_([p.exchange_id for p in pending]))))
            new = [Approval(run_id=self.run_id, exchange_key=p.exchange_id, payload=storable(json_safe(p.exchange.to_dict())),
                            status="pending", deadline=deadline) for p in pending if p.exchange_id not in existing]
            s.add_all(new)
            s.flush()
            for a in new:
                s.add(Event(run_id=self.run_id, type="approval", ref_id=a.id,
                            payload={"key": a.exchange_key, "status": "pending", "deadline": deadline.isoformat()}))

    def _poll_approvals(self, keys: list[str]) -> tuple[list[Approval], dict[str, tuple[str, str | None]], bool]:
        """(rows still waiting, decisions by key, whether any expired now): expired rows are timed out,
        conditionally, so a human decision committed meanwhile wins over the timeout."""
        now = utcnow()
        with session_scope(self.factory) as s:
            requested = s.scalar(select(Run.requested_action).where(Run.id == self.run_id))
            if requested in ("pause", "cancel"):
                raise StopRequested(f"{requested} requested while waiting for approvals", action=requested)
            rows = list(s.scalars(select(Approval).where(Approval.run_id == self.run_id,
                                                         Approval.exchange_key.in_(keys))))
            waiting = [a for a in rows if a.status == "pending"]
            expired = [a for a in waiting if a.deadline is None or a.deadline <= now]
            if expired:
                fence(s, self.run_id, self.worker_id)
                for a in expired:
                    if s.execute(update(Approval).where(Approval.id == a.id, Approval.status == "pending")
                                 .values(status="timed_out", decided_at=now, decided_by="timeout")
                                 .execution_options(synchronize_session=False)).rowcount:
                        s.add(Event(run_id=self.run_id, type="approval", ref_id=a.id,
                                    payload={"key": a.exchange_key, "status": "timed_out"}))
            return waiting, {a.exchange_key: (a.status, a.text) for a in rows}, bool(expired)
