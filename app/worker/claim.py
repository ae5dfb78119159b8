"""Who holds a run: worker registration, the atomic claim, the heartbeat and the ownership fence.

Why a conditional UPDATE and not a lock: the same code must be safe with several worker processes on
one SQLite file and with workers on several hosts sharing PostgreSQL, and neither ``SELECT ... FOR
UPDATE SKIP LOCKED`` (PostgreSQL only) nor advisory locks work on both. A worker reads candidates
(``queued`` runs, and ``running`` runs whose heartbeat is older than ``stale_after_s``: their worker
died) and then claims one with::

    UPDATE run SET status='running', worker_id=:me, heartbeat_at=:now,
                   started_at=coalesce(started_at, :now)
    WHERE id=:id AND status=:seen_status AND heartbeat_at IS [NOT DISTINCT FROM] :seen_heartbeat
          AND worker_id IS [NOT DISTINCT FROM] :seen_worker

and owns the run iff ``rowcount == 1``. SQLite serialises writers; PostgreSQL (READ COMMITTED)
re-evaluates the WHERE clause on the row version a concurrent claimer committed, so exactly one of
several claimers of the same snapshot wins, on both backends.

Why a fence on every write: a worker that stalls past ``stale_after_s`` (or a network partition)
loses its run to another worker while it still believes it holds it. Every transaction a worker
writes for a run therefore starts with ``UPDATE run SET heartbeat_at=now WHERE id=? AND worker_id=me
AND status='running'`` and raises ``RunLost`` when no row matches: the zombie's writes roll back, so
a taken-over run is never written by two workers. (On PostgreSQL that UPDATE also row-locks the run
for the rest of the transaction, serialising it against a concurrent claim.)

Clock: heartbeats and staleness use the workers' clocks (UTC). Workers on several hosts need
clocks that agree to well within ``stale_after_s`` (NTP), which the default of 30 s leaves room for.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, func, literal, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.db import session_scope
from app.models import Event, Run, Worker
from app.types import UTCDateTime, utcnow

log = logging.getLogger(__name__)


class RunLost(Exception):
    """This worker no longer holds the run (another worker took it over, or it was moved on)."""

    def __init__(self, run_id: int) -> None:
        super().__init__(f"run {run_id} is no longer held by this worker")
        self.run_id = run_id


@dataclass(frozen=True)
class Candidate:
    id: int
    status: str
    heartbeat_at: datetime | None
    worker_id: int | None
    takeovers: int = 0


@dataclass(frozen=True)
class Claimed:
    id: int
    taken_over: bool       # True when the run was 'running' under a dead worker


# --- workers --------------------------------------------------------------------------------------

def register_worker(factory: sessionmaker[Session], name: str | None = None) -> int:
    """Insert this process's ``worker`` row (idle) and return its id."""
    host, pid = socket.gethostname(), os.getpid()
    with session_scope(factory) as s:
        w = Worker(name=(name or f"{host}:{pid}")[:200], hostname=host[:255], pid=pid, status="idle")
        s.add(w)
        s.flush()
        return w.id


def set_worker_status(factory: sessionmaker[Session], worker_id: int, status: str) -> None:
    with session_scope(factory) as s:
        s.execute(update(Worker).where(Worker.id == worker_id).values(status=status, heartbeat_at=utcnow()))


# --- claiming ---------------------------------------------------------------------------------------

def stale_before(stale_after_s: float, now: datetime | None = None) -> datetime:
    return (now or utcnow()) - timedelta(seconds=stale_after_s)


def candidates(session: Session, stale_after_s: float, limit: int = 20) -> list[Candidate]:
    """Queued runs and running runs with a stale (or missing) heartbeat, oldest first."""
    cutoff = stale_before(stale_after_s)
    rows = session.execute(
        select(Run.id, Run.status, Run.heartbeat_at, Run.worker_id, Run.takeovers)
        .where(or_(Run.status == "queued",
                   and_(Run.status == "running", or_(Run.heartbeat_at.is_(None), Run.heartbeat_at < cutoff))))
        .order_by(Run.id).limit(limit)).all()
    return [Candidate(*r) for r in rows]


def _is(column, value):
    return column.is_(None) if value is None else column == value


def try_claim(session: Session, cand: Candidate, worker_id: int) -> bool:
    """The conditional UPDATE of the module docstring, plus a ``status`` event row; True iff we won.

    The caller commits (``session_scope``); a lost race leaves nothing behind."""
    now = utcnow()
    res = session.execute(
        update(Run)
        .where(Run.id == cand.id, Run.status == cand.status, _is(Run.heartbeat_at, cand.heartbeat_at),
               _is(Run.worker_id, cand.worker_id))
        .values(status="running", worker_id=worker_id, heartbeat_at=now,
                started_at=func.coalesce(Run.started_at, literal(now, UTCDateTime())),
                takeovers=Run.takeovers + (1 if cand.status == "running" else 0))
        .execution_options(synchronize_session=False))
    if res.rowcount != 1:
        return False
    session.add(Event(run_id=cand.id, type="status",
                      payload={"status": "running", "worker_id": worker_id,
                               "taken_over": cand.status == "running", "previous_worker_id": cand.worker_id}))
    return True


def fail_poisoned(session: Session, cand: Candidate, max_takeovers: int) -> bool:
    """Fail a stale running run whose workers already died ``max_takeovers`` times holding it (a run that
    kills its worker, e.g. out of memory, would otherwise be retried by every worker for ever). The same
    conditional UPDATE as a claim, so it races safely with claimers; True iff it was failed here."""
    now = utcnow()
    error = (f"the workers running this run died {cand.takeovers + 1} times (the last one was worker "
             f"{cand.worker_id}); it is not retried after {max_takeovers} takeovers (OPCOD_MAX_TAKEOVERS). A run "
             "that kills its worker usually runs out of memory: lower rollout.batch_prompts, rollout.n or "
             "max_new_tokens, then resume it")
    res = session.execute(
        update(Run)
        .where(Run.id == cand.id, Run.status == "running", _is(Run.heartbeat_at, cand.heartbeat_at),
               _is(Run.worker_id, cand.worker_id))
        .values(status="failed", worker_id=None, finished_at=now, error=error, requested_action=None)
        .execution_options(synchronize_session=False))
    if res.rowcount != 1:
        return False
    session.add(Event(run_id=cand.id, type="status",
                      payload={"status": "failed", "error": error, "previous_worker_id": cand.worker_id}))
    return True


def claim_next(factory: sessionmaker[Session], worker_id: int, stale_after_s: float,
               max_takeovers: int | None = None) -> Claimed | None:
    """Claim the oldest claimable run, or return None when there is none (or every race was lost). A stale
    run already taken over ``max_takeovers`` times is failed instead (``fail_poisoned``)."""
    with factory() as s:
        cands = candidates(s, stale_after_s)
    for cand in cands:
        if cand.status == "running" and max_takeovers is not None and cand.takeovers >= max_takeovers:
            with session_scope(factory) as s:
                if fail_poisoned(s, cand, max_takeovers):
                    log.warning("run %s: failed after %d takeovers", cand.id, cand.takeovers)
            continue
        with session_scope(factory) as s:
            if try_claim(s, cand, worker_id):
                if cand.status == "running":
                    log.warning("run %s: heartbeat stale since %s (worker %s); taking it over",
                                cand.id, cand.heartbeat_at, cand.worker_id)
                return Claimed(cand.id, cand.status == "running")
    return None


# --- holding ------------------------------------------------------------------------------------------

def fence(session: Session, run_id: int, worker_id: int) -> None:
    """First statement of every write for a held run: refresh its heartbeat iff we still hold it."""
    res = session.execute(
        update(Run).where(Run.id == run_id, Run.worker_id == worker_id, Run.status == "running")
        .values(heartbeat_at=utcnow()).execution_options(synchronize_session=False))
    if res.rowcount != 1:
        raise RunLost(run_id)


class Heartbeat:
    """A daemon thread refreshing the worker row and the held run every ``interval`` seconds.

    Training runs in the main thread (torch releases the GIL in its kernels, and CPython switches
    threads every few milliseconds otherwise), so the heartbeat keeps going during long steps. A trainer
    that reports nothing (``progressed``: every trainer event and step boundary) for ``stall_after_s`` is
    stalled (a deadlock, a hung collective): the run's heartbeat is no longer refreshed, so another worker
    takes the run over, and this one gets ``RunLost`` at its next write if it ever wakes. When
    the run's row no longer names this worker, ``lost`` is set and the controls stop the trainer at
    the next boundary. Database errors are logged and retried at the next beat: a busy database must
    not kill a worker."""

    def __init__(self, factory: sessionmaker[Session], worker_id: int, interval: float,
                 stall_after_s: float | None = None) -> None:
        self.factory = factory
        self.worker_id = worker_id
        self.interval = interval
        self.stall_after_s = stall_after_s
        self.last_progress = time.monotonic()
        self.stalled = False
        self.lost = threading.Event()
        self._run_id: int | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat-{worker_id}", daemon=True)

    @property
    def run_id(self) -> int | None:
        return self._run_id

    def hold(self, run_id: int | None) -> None:
        """Start (or, with None, stop) refreshing a run's heartbeat."""
        with self._lock:
            self._run_id = run_id
            self.lost.clear()
            self.last_progress = time.monotonic()

    def progressed(self, *_args) -> None:
        """The trainer did something (an event, a step boundary): it is not stalled."""
        self.last_progress = time.monotonic()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=max(5.0, 2 * self.interval))

    def beat(self) -> None:
        with self._lock:
            run_id = self._run_id
        now = utcnow()
        with session_scope(self.factory) as s:
            s.execute(update(Worker).where(Worker.id == self.worker_id)
                      .values(heartbeat_at=now, status="busy" if run_id is not None else "idle"))
            idle_s = time.monotonic() - self.last_progress
            if run_id is not None and self.stall_after_s is not None and idle_s > self.stall_after_s:
                if not self.stalled:
                    log.error("run %s: the trainer reported nothing for %.0f s (OPCOD_STALL_AFTER_S); no longer "
                              "refreshing its heartbeat, so another worker takes it over", run_id, idle_s)
                self.stalled = True
            elif run_id is not None:
                self.stalled = False
                res = s.execute(update(Run).where(Run.id == run_id, Run.worker_id == self.worker_id,
                                                  Run.status == "running")
                                .values(heartbeat_at=now).execution_options(synchronize_session=False))
                if res.rowcount != 1:
                    with self._lock:
                        if self._run_id == run_id:
                            self.lost.set()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.beat()
            except Exception:  # noqa: BLE001 - logged, retried at the next beat
                log.exception("heartbeat failed (will retry)")
