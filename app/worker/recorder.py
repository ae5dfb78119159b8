"""The database observer: the trainer's events become rows, one transaction per step.

Why buffer: a step produces dozens to thousands of rows (rollouts, feedback, exchanges, metrics).
Writing them one transaction per row would make SQLite fsync per row and the dashboard see half a
step. The recorder keeps the events in memory and writes them in one transaction when a ``step``,
``checkpoint``, ``finish``, ``run_start`` or ``resume`` event arrives, and right before the trainer
writes a checkpoint to disk (``flush()``, called by the worker's trainer), so that the database never
lags behind a checkpoint file: a checkpoint on disk implies every event before it is in the database.

Each transaction ends with the ownership fence: one UPDATE of the run row that refreshes its
heartbeat, writes the batch's changes to the run (``RunChanges``: next task, progress, exchange count,
summary) and matches only while this worker holds the run; when it matches nothing the transaction is
rolled back and ``RunLost`` raised, so a worker that lost its run writes nothing (the same guarantee as
``claim.fence`` first, which cost a statement of its own plus a load of the run row per step:
``benchmarks/observer_overhead.py``). It inserts, per trainer event, its row(s) and one ``event`` row (the SSE stream: type,
``ref_id`` = the row id, a small payload) in the trainer's order. Rollouts, feedback, prompts and
metric rows are parts of an exchange or a step and ride on that row's event.

Exact resume. The database may hold rows written after the checkpoint a resumed trainer restores
from (a worker killed between a step's transaction and the next checkpoint). The trainer numbers
its events and every checkpoint records ``events_before``; the ``checkpoint`` row stores it. On
``resume`` the recorder finds the row of the checkpoint on disk (same tag and ``events_before``) and
its event row: every trainer-derived event row after that one, and the rows they point to, belong
to work the resumed trainer will redo. They are deleted (steps cascade to their rollouts, feedback
and exchanges; metrics go with their steps) and overrides applied after it go back to ``pending``
(they are handed to the trainer again). When no row matches, the checkpoint on disk is newer than
everything the database holds (the worker died between writing it and recording it), so nothing
is deleted and the missing checkpoint row is recorded. Because every row is tied to an event by
position rather than by step number, this also covers gate records re-decided by an override in
the middle of a round and overrides applied right before a pause (the pause checkpoint includes
them, and they precede its event row, so they stay applied). A fresh start (``run_start``) deletes
all trainer-derived rows of the run. Human work is never deleted: approvals are keyed by exchange key,
and the overrides and replays of a deleted exchange keep its key (``exchange_id`` becomes NULL) and are
re-linked to the redone exchange when it is written (``_relink_human_work``); until then they wait.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sqlalchemy import delete, func, insert, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from app.db import session_scope
from app.models import (BreakSample, Checkpoint, EvalResult, Event, Exchange, Feedback, GateRecord, Metric, Override,
                        Prompt, Replay, Rollout, Run, Step, TrustChange, Worker)
from app.types import utcnow
from app.worker.claim import RunLost, fence, stale_before
from app.worker.rows import (EVENT_PAYLOADS, ROW_BUILDERS, ROW_UPDATES, RunChanges, _finite, break_values,
                             exchange_values, json_safe, feedback_values, peer_feedback_values, rollout_values,
                             step_metrics, storable, trust_values)
from opcod_core import events as ev

log = logging.getLogger(__name__)

#: Event rows derived from trainer output: deleted when the work they record is redone.
TRAINER_EVENT_TYPES = ("run_start", "resume", "gate", "exchange", "break", "trust", "step", "eval", "checkpoint",
                       "override")
#: Events that flush the buffer (plus ``flush()`` before every checkpoint write).
FLUSH_ON = ("step", "checkpoint", "finish", "run_start", "resume")


class Recorder:
    """``opcod_core.observer.Observer`` writing into the database for one held run."""

    def __init__(self, factory: sessionmaker[Session], run_id: int, worker_id: int, out_dir: str | Path,
                 stale_after_s: float = 30.0) -> None:
        self.factory = factory
        self.run_id = run_id
        self.worker_id = worker_id
        self.out_dir = Path(out_dir)
        self.stale_after_s = stale_after_s
        self.buffer: list[ev.Event] = []
        self.transactions = 0
        self._prompt_ids: dict[str, int] | None = None
        # Human work waiting for a redone exchange exists only after this recorder deleted exchanges (a
        # fresh start or a resume; the web side links overrides and replays to existing exchanges): the
        # re-link query runs until none waits (and once at the first write of a new recorder).
        self._relink_pending = True

    # --- observer ---------------------------------------------------------------------------------
    on_progress = None  # called with each trainer event (the heartbeat's stall detector)

    def on_event(self, event: ev.Event) -> None:
        if self.on_progress is not None:
            self.on_progress()
        self.buffer.append(event)
        if event.type in FLUSH_ON:
            self.flush()

    def flush(self) -> None:
        """Write everything buffered in one fenced transaction (nothing when the buffer is empty)."""
        if not self.buffer:
            return
        events, self.buffer = self.buffer, []
        with session_scope(self.factory) as s:
            self._write(s, events)
        self.transactions += 1

    def assert_held(self) -> None:
        """Raise ``RunLost`` unless this worker still holds the run (a fenced, empty transaction)."""
        with session_scope(self.factory) as s:
            fence(s, self.run_id, self.worker_id)

    # --- writing ----------------------------------------------------------------------------------
    def _prompts(self, s: Session) -> dict[str, int]:
        if self._prompt_ids is None:
            self._prompt_ids = dict(s.execute(select(Prompt.item_key, Prompt.id).where(Prompt.run_id == self.run_id)).all())
        return self._prompt_ids

    def _write(self, s: Session, events: list[ev.Event]) -> None:
        """One batch of events: the restart markers, a row per event (``ROW_BUILDERS``; break probes and
        trust changes in bulk), each step's mean exchange divergence (in the step's own INSERT), the exchanges,
        the updates of existing rows (``ROW_UPDATES``), the step metrics and progress, and an event row
        per event that the live pages announce (``EVENT_PAYLOADS``), pointing at the row it made; last, the
        fenced update of the run row (module docstring)."""
        run = RunChanges(self.run_id)
        self._restart(s, run, events)
        rows: list[Any] = [None] * len(events)   # the row each event's event row points to
        steps: dict[int, Step] = {}
        for i, e in enumerate(events):
            build = ROW_BUILDERS.get(e.type)
            if build is None:
                continue
            rows[i] = build(self.run_id, e)
            s.add(rows[i])
            if isinstance(e, ev.StepEvent):
                steps[e.global_step] = rows[i]
            elif isinstance(e, ev.CheckpointEvent):
                run.values["next_task"] = e.next_task
        _mean_divergence_per_step(steps, [e for e in events if isinstance(e, ev.ExchangeEvent)])
        s.flush()
        for kind, model, values in ((ev.BreakEvent, BreakSample, break_values), (ev.TrustEvent, TrustChange, trust_values)):
            batch = [(i, e) for i, e in enumerate(events) if isinstance(e, kind)]
            for (i, _), row_id in zip(batch, insert_ids(s, model, [values(self.run_id, e) for _, e in batch]), strict=True):
                rows[i] = row_id
        if any(isinstance(e, ev.CheckpointEvent) for e in events):
            self._mark_pruned(s)
        exchanges = [(i, e) for i, e in enumerate(events) if isinstance(e, ev.ExchangeEvent)]
        if exchanges:
            run.exchanges_added += self._write_exchanges(s, exchanges, steps, rows)
        now = utcnow()
        for i, e in enumerate(events):
            apply = ROW_UPDATES.get(e.type)
            ref = apply(s, run, e, now) if apply is not None else None
            if ref is not None:
                rows[i] = ref
        step_metrics(s, run, steps)
        event_rows = []
        for i, e in enumerate(events):
            payload = EVENT_PAYLOADS.get(e.type)
            if payload is not None:
                ref = rows[i]
                event_rows.append({"run_id": self.run_id, "type": e.type, "payload": json_safe(payload(e)),
                                   "ref_id": ref if isinstance(ref, int) or ref is None else ref.id})
        if event_rows:
            s.execute(insert(Event.__table__), event_rows)
        s.flush()
        self._fence_and_update(s, run, now)

    def _fence_and_update(self, s: Session, run: RunChanges, now) -> None:
        """The batch's changes to the run row, in the UPDATE that proves this worker still holds it."""
        values = dict(run.values)
        if run.exchanges_added:
            base = values.get("exchange_count", Run.exchange_count)
            values["exchange_count"] = base + run.exchanges_added
        res = s.execute(update(Run).where(Run.id == self.run_id, Run.worker_id == self.worker_id,
                                          Run.status == "running")
                        .values(heartbeat_at=now, **values).execution_options(synchronize_session=False))
        if res.rowcount != 1:
            raise RunLost(self.run_id)

    def _mark_pruned(self, s: Session) -> None:
        """Checkpoint rows whose directory the retention policy deleted (opcod_core.checkpoint) say so."""
        rows = s.execute(select(Checkpoint.id, Checkpoint.path).where(Checkpoint.run_id == self.run_id,
                                                                      Checkpoint.pruned.is_(False))).all()
        gone = [cid for cid, path in rows if not (Path(path) / "state.json").exists()]
        if gone:
            s.execute(update(Checkpoint).where(Checkpoint.id.in_(gone)).values(pruned=True)
                      .execution_options(synchronize_session=False))

    def _restart(self, s: Session, run: RunChanges, events: list[ev.Event]) -> None:
        """A fresh start wipes the run's rows; a resume drops what was written after its checkpoint."""
        for e in events:
            if isinstance(e, ev.RunStartEvent):
                self._wipe(s)
                run.values.update(next_task=0, progress=None, summary=None, exchange_count=0)
                if e.tasks:
                    run.values["total_tasks"] = e.tasks
                self._relink_pending = True
            elif isinstance(e, ev.ResumeEvent):
                self._cleanup_after_checkpoint(s)
                run.values["next_task"] = e.next_task
                self._relink_pending = True

    def _write_exchanges(self, s: Session, exchanges: list[tuple[int, ev.ExchangeEvent]], steps: dict[int, Step],
                         rows: list[Any]) -> int:
        """Prompt (once per item), rollout, feedback and exchange rows of a batch's exchange events, each
        table in one bulk insert that returns the ids in order (``insert_ids``); the number of exchanges.
        An exchange's primary feedback (``exchange.feedback_id``) and the other tutors' feedback on the same
        rollout (N peers: ``peer_feedback_values``) share the feedback table's one insert."""
        run_id = self.run_id
        prompts = self._ensure_prompts(s, exchanges)
        step_ids: dict[int, int] = {g: st.id for g, st in steps.items()}
        missing = {e.global_step for _, e in exchanges} - set(step_ids)
        if missing:  # exchanges are always flushed with their step; kept for robustness
            step_ids.update(dict(s.execute(select(Step.global_step, Step.id).where(
                Step.run_id == run_id, Step.global_step.in_(missing))).all()))
        events = [e for _, e in exchanges]
        rollout_ids = insert_ids(s, Rollout, [rollout_values(run_id, step_ids[e.global_step], prompts[e.prompt_id], e)
                                              for e in events])
        fb_values = [feedback_values(rid, e) for rid, e in zip(rollout_ids, events, strict=True)]
        peers = [v for rid, e in zip(rollout_ids, events, strict=True) for v in peer_feedback_values(rid, e)]
        fb_new = iter(insert_ids(s, Feedback, [v for v in fb_values if v is not None] + peers))
        fb_ids = [next(fb_new) if v is not None else None for v in fb_values]
        origin_keys = {e.origin_key for e in events if e.origin_key}
        origins = dict(s.execute(select(Exchange.key, Exchange.id).where(
            Exchange.run_id == run_id, Exchange.key.in_(origin_keys))).all()) if origin_keys else {}
        ex_ids = insert_ids(s, Exchange, [exchange_values(run_id, e, step_ids[e.global_step], rid, fid, origins)
                                          for e, rid, fid in zip(events, rollout_ids, fb_ids, strict=True)])
        for (i, _), xid in zip(exchanges, ex_ids, strict=True):
            rows[i] = xid
        self._relink_human_work(s, {e.key: xid for e, xid in zip(events, ex_ids, strict=True)})
        return len(ex_ids)

    def _relink_human_work(self, s: Session, new: dict[str, int]) -> None:
        """Overrides and replays of exchanges that a resume deleted point again at the redone exchange with
        the same key (they were kept, ``exchange_id`` NULL, when it was deleted: migration 0005). Only
        while such work may wait (``_relink_pending``)."""
        if not self._relink_pending:
            return
        waiting_left = False
        for model in (Override, Replay):
            waiting = s.execute(select(model.id, model.exchange_key).where(
                model.run_id == self.run_id, model.exchange_id.is_(None), model.exchange_key.in_(list(new)))).all()
            for row_id, key in waiting:
                s.execute(update(model).where(model.id == row_id).values(exchange_id=new[key])
                          .execution_options(synchronize_session=False))
            waiting_left = waiting_left or s.scalar(select(model.id).where(
                model.run_id == self.run_id, model.exchange_id.is_(None), model.exchange_key.is_not(None),
                model.exchange_key.not_in(list(new))).limit(1)) is not None
        self._relink_pending = waiting_left

    def _ensure_prompts(self, s: Session, exchanges: list[tuple[int, ev.ExchangeEvent]]) -> dict[str, int]:
        """Item key -> prompt id, adding a Prompt row for each item seen for the first time."""
        prompts = self._prompts(s)
        new_prompts: dict[str, dict[str, Any]] = {}
        for _, e in exchanges:
            key = e.prompt_id
            if key not in prompts and key not in new_prompts:
                new_prompts[key] = {"run_id": self.run_id, "item_key": key, "domain": e.domain, "split": "train",
                                    "answer_type": e.answer_type, "question": storable(e.question),
                                    "choices": storable(list(e.choices)), "labels": storable(list(e.labels)),
                                    "gold": storable(e.gold)}
        if new_prompts:
            prompts.update(zip(new_prompts, insert_ids(s, Prompt, list(new_prompts.values())), strict=True))
        return prompts

    # --- exact resume ------------------------------------------------------------------------------
    def _wipe(self, s: Session) -> None:
        """A fresh start: remove every trainer-derived row of the run; applied overrides apply again."""
        run_id = self.run_id
        for model in (Exchange, Step, GateRecord, EvalResult, BreakSample, TrustChange, Checkpoint, Metric):
            s.execute(delete(model).where(model.run_id == run_id))
        self._delete_events(s, [eid for eid, _, _ in self._worker_events(s, after_id=0)])
        s.execute(update(Override).where(Override.run_id == run_id, Override.status == "applied")
                  .values(status="pending", applied_at=None, applied_at_step=None))
        self._requeue_orphan_replays(s)

    def _cleanup_after_checkpoint(self, s: Session) -> None:
        """Delete what was written after the checkpoint the trainer restored (module docstring)."""
        from opcod_core.checkpoint import latest_checkpoint, load_state

        run_id = self.run_id
        path = latest_checkpoint(self.out_dir)
        if path is None:  # the trainer only emits ``resume`` after restoring one
            raise RuntimeError(f"run {run_id}: resumed without a checkpoint in {self.out_dir}")
        state = load_state(path)
        ck = s.execute(select(Checkpoint).where(
            Checkpoint.run_id == run_id, Checkpoint.tag == path.name,
            Checkpoint.events_before == state["events_written"]).order_by(Checkpoint.id.desc()).limit(1)).scalar()
        if ck is None:
            log.info("run %s: checkpoint %s is newer than the database; nothing to undo", run_id, path.name)
            ck = Checkpoint(run_id=run_id, tag=path.name, path=str(path), next_task=state["next_task"],
                            round=None, events_before=state["events_written"], permanent=bool(state.get("permanent")))
            s.add(ck)
            s.flush()
            s.add(Event(run_id=run_id, type="checkpoint", ref_id=ck.id,
                        payload={"tag": ck.tag, "next_task": ck.next_task, "recovered": True}))
            self._requeue_orphan_replays(s)
            return
        cut = s.execute(select(Event.id).where(Event.run_id == run_id, Event.type == "checkpoint",
                                               Event.ref_id == ck.id).order_by(Event.id.desc()).limit(1)).scalar()
        if cut is None:
            raise RuntimeError(f"run {run_id}: checkpoint row {ck.id} has no event row")
        later = self._worker_events(s, after_id=cut)
        ids: dict[str, list[int]] = {}
        for _, t, ref in later:
            if ref is not None:
                ids.setdefault(t, []).append(ref)
        step_ids = ids.get("step", [])
        if step_ids:
            gsteps = list(s.execute(select(Step.global_step).where(Step.id.in_(step_ids))).scalars())
            if gsteps:
                s.execute(delete(Metric).where(Metric.run_id == run_id, Metric.global_step.in_(gsteps)))
            undone = s.scalar(select(func.count()).select_from(Exchange).where(
                Exchange.run_id == run_id, Exchange.step_id.in_(step_ids))) or 0
            s.execute(update(Run).where(Run.id == run_id).values(exchange_count=Run.exchange_count - undone)
                      .execution_options(synchronize_session=False))
        for t, model in (("step", Step), ("gate", GateRecord), ("eval", EvalResult),
                         ("break", BreakSample), ("trust", TrustChange), ("checkpoint", Checkpoint)):
            if ids.get(t):
                s.execute(delete(model).where(model.run_id == run_id, model.id.in_(ids[t])))
        if ids.get("override"):
            s.execute(update(Override).where(Override.run_id == run_id, Override.id.in_(ids["override"]),
                                             Override.status == "applied")
                      .values(status="pending", applied_at=None, applied_at_step=None))
        self._delete_events(s, [eid for eid, _, _ in later])
        if later:
            log.info("run %s: resumed from %s; undid %d events written after it", run_id, path.name, len(later))
        self._requeue_orphan_replays(s)

    def _worker_events(self, s: Session, after_id: int) -> list[tuple[int, str, int | None]]:
        """(id, type, ref_id) of the event rows this recorder derived from trainer events after ``after_id``.
        The web side also writes ``override`` events (when a human posts one); only ours say ``applied``."""
        rows = s.execute(select(Event.id, Event.type, Event.ref_id, Event.payload).where(
            Event.run_id == self.run_id, Event.id > after_id, Event.type.in_(TRAINER_EVENT_TYPES))
            .order_by(Event.id)).all()
        return [(eid, t, ref) for eid, t, ref, payload in rows
                if t != "override" or (payload or {}).get("status") == "applied"]

    @staticmethod
    def _delete_events(s: Session, ids: list[int]) -> None:
        for i in range(0, len(ids), 500):
            s.execute(delete(Event).where(Event.id.in_(ids[i:i + 500])))

    def _requeue_orphan_replays(self, s: Session) -> None:
        """Replays of this run claimed by a worker that died before storing the result: queue them again."""
        cutoff = stale_before(self.stale_after_s)
        dead = select(Worker.id).where(Worker.heartbeat_at < cutoff)
        s.execute(update(Replay).where(
            Replay.run_id == self.run_id, Replay.status == "running",
            (Replay.worker_id.is_(None)) | (Replay.worker_id == self.worker_id) | Replay.worker_id.in_(dead))
            .values(status="queued", worker_id=None, started_at=None).execution_options(synchronize_session=False))


def _mean_divergence_per_step(steps: dict[int, Step], events: list[ev.ExchangeEvent]) -> None:
    """``Step.exchange_divergence`` of each step written in this batch: the mean ``loss`` of the exchanges
    recorded with it that trained (not skipped, finite loss). Stored once here instead of averaged over
    every exchange of the run on each refresh of the run page's chart (``run_views.chart_data``)."""
    sums: dict[int, list[float]] = {}
    for e in events:
        loss = _finite(e.loss)
        if e.global_step in steps and not e.skipped and loss is not None:
            acc = sums.setdefault(e.global_step, [0.0, 0])
            acc[0] += loss
            acc[1] += 1
    for g, (total, n) in sums.items():
        steps[g].exchange_divergence = total / n


def insert_ids(s: Session, model, values: list[dict[str, Any]]) -> list[int]:
    """Insert ``values`` (dicts with the same keys) in bulk; their ids, in the same order.

    Why not ``session.add`` per row: the unit of work issues one INSERT per row whose id it needs back
    and builds an ORM object per row; the recorder writes three rows per exchange, so that was most of
    its time (``benchmarks/ingest.py``). How the ids come back differs per backend:

    * PostgreSQL: the ids are reserved first, one ``nextval`` per row in a single query, and the rows
      inserted with them by a plain ``executemany`` (psycopg's pipeline). A multi-row INSERT ...
      RETURNING was a third slower here: psycopg parses each long statement's placeholders anew.
    * SQLite: multi-row INSERT ... RETURNING. RETURNING's row order is not promised (SQLAlchemy, asked
      to sort, falls back to one statement per row on SQLite), so the ids are sorted: SQLite gives each
      inserted row the largest rowid so far + 1, in the order of the VALUES, and the transaction holds
      the database's only write lock from its first write to its commit, so the ids of one call ascend
      in the order of ``values``."""
    if not values:
        return []
    table = model.__table__  # Core, not ORM bulk mode: that splits the batch wherever a default column is None
    if s.get_bind().dialect.name == "postgresql":
        ids = list(s.scalars(text("SELECT nextval(pg_get_serial_sequence(:t, 'id')) FROM generate_series(1, :n)"),
                             {"t": table.name, "n": len(values)}))
        s.execute(insert(table), [{**v, "id": i} for v, i in zip(values, ids, strict=True)])
    else:
        ids = sorted(s.scalars(insert(table).returning(table.c.id), values))
    if len(ids) != len(values):
        raise RuntimeError(f"{model.__tablename__}: {len(values)} rows inserted, {len(ids)} ids returned")
    return ids
