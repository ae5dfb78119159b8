"""Replays of runs nobody is running, served by an idle worker.

A replay is a measurement on the tutee's weights (``opcod_core.replay``): a running run's own worker
serves its replays between steps (``DBControls.poll``), but a paused, finished, failed or cancelled
run has no trainer. An idle worker claims such a replay (conditional UPDATE ``queued`` ->
``running``, like a run claim), builds the run's trainer from its stored config, restores the run's
latest checkpoint (``Trainer.restore``: weights only, nothing is trained or written to the run's
directory) and calls ``opcod_core.replay.replay_exchange``. Replays of queued or running runs are
left to the worker that holds (or will hold) the run. The last restored trainer is kept, so a burst
of replays on one run loads the checkpoint once.
"""

from __future__ import annotations

import logging
import traceback
from pathlib import Path

from datetime import timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.db import session_scope
from app.models import Event, Replay, Run, Worker, lock_run
from app.types import utcnow
from app.worker.controls import exchange_payload, resolve_tutor_checkpoint
from app.worker.rows import EVENT_PAYLOADS, finish_replay
from opcod_core.events import ReplayEvent
from opcod_core.vocabulary import IDLE_RUN_STATUSES

log = logging.getLogger(__name__)



def requeue_orphaned_replays(session: Session, stale_after_s: float) -> int:
    """Put back in the queue the replays left ``running`` by a worker that died or stopped (its heartbeat is
    stale or it marked itself stopped) or that no longer exists; returns how many."""
    cutoff = utcnow() - timedelta(seconds=stale_after_s)
    gone = select(Worker.id).where(or_(Worker.status == "stopped", Worker.heartbeat_at < cutoff))
    res = session.execute(update(Replay).where(Replay.status == "running",
                                               or_(Replay.worker_id.is_(None), Replay.worker_id.in_(gone)))
                          .values(status="queued", worker_id=None, started_at=None)
                          .execution_options(synchronize_session=False))
    return res.rowcount or 0


def claim_idle_replay(factory: sessionmaker[Session], worker_id: int, stale_after_s: float | None = None) -> int | None:
    """Claim the oldest queued replay of a run nobody is running (after re-queueing orphaned ones when
    ``stale_after_s`` is given); its id, or None."""
    if stale_after_s is not None:
        with session_scope(factory) as s:
            if n := requeue_orphaned_replays(s, stale_after_s):
                log.warning("%d replay(s) left running by a dead worker put back in the queue", n)
    with factory() as s:
        ids = list(s.scalars(select(Replay.id).join(Run, Run.id == Replay.run_id)
                             .where(Replay.status == "queued", Replay.exchange_id.is_not(None),
                                    Run.status.in_(sorted(IDLE_RUN_STATUSES)))
                             .order_by(Replay.id).limit(20)))
    for rid in ids:
        with session_scope(factory) as s:
            if s.execute(update(Replay).where(Replay.id == rid, Replay.status == "queued")
                         .values(status="running", worker_id=worker_id, started_at=utcnow())
                         .execution_options(synchronize_session=False)).rowcount == 1:
                return rid
    return None


class IdleReplayer:
    def __init__(self, factory: sessionmaker[Session], worker_id: int, runs_dir: Path, cache_dir: Path,
                 stale_after_s: float | None = None) -> None:
        self.factory = factory
        self.stale_after_s = stale_after_s  # re-queue replays of dead workers before claiming (None: never)
        self.worker_id = worker_id
        self.runs_dir = Path(runs_dir)
        self.cache_dir = Path(cache_dir)
        self._cached: tuple[int, str, object] | None = None   # (run id, checkpoint path, trainer)

    def forget(self) -> None:
        """Drop the cached trainer (before training a run: its memory is needed)."""
        self._cached = None

    def serve_one(self) -> bool:
        """Claim and serve one idle replay; False when there was none."""
        rid = claim_idle_replay(self.factory, self.worker_id, self.stale_after_s)
        if rid is None:
            return False
        try:
            event = self._serve(rid)
        except Exception as exc:  # noqa: BLE001 - a bad replay is reported, it never kills the worker
            log.exception("replay %s failed", rid)
            event = ReplayEvent(id=str(rid), status="failed",
                                error=f"{type(exc).__name__}: {exc}\n\n{traceback.format_exc()}")
        self._store(rid, event)
        return True

    def _serve(self, rid: int) -> ReplayEvent:
        from opcod_core.checkpoint import latest_checkpoint
        from opcod_core.config import RunConfig
        from opcod_core.controls import ReplayRequest
        from opcod_core.replay import replay_exchange

        with self.factory() as s:
            rp = s.get(Replay, rid)
            run = s.get(Run, rp.run_id)
            ex = exchange_payload(s, rp.exchange_id)
            inputs, config_dict, run_id = dict(rp.inputs or {}), run.config, run.id
            out_dir = Path(run.out_dir) if run.out_dir else self.runs_dir / str(run.id)
        if ex is None:
            return ReplayEvent(id=str(rid), status="failed", error="exchange not found")
        ckpt = latest_checkpoint(out_dir)
        if ckpt is None:
            return ReplayEvent(id=str(rid), status="failed", error=f"run {run_id} has no checkpoint in {out_dir}")
        trainer = self._trainer(run_id, RunConfig.from_dict(config_dict), out_dir, str(ckpt))
        rq = ReplayRequest(str(rid), ex, feedback=inputs.get("feedback"),
                           tutor_checkpoint=resolve_tutor_checkpoint(inputs.get("tutor_checkpoint"), out_dir,
                                                                     ex.tutor))
        return replay_exchange(trainer, rq)

    def _trainer(self, run_id: int, config, out_dir: Path, ckpt: str):
        from app.worker.trainer import WorkerTrainer   # imports torch: only when a replay runs

        if self._cached and self._cached[:2] == (run_id, ckpt):
            return self._cached[2]
        if self._cached:
            self._cached[2].close()   # the previous checkpoint's students (engines, actors) go
        self._cached = None
        trainer = WorkerTrainer(config, out_dir, cache_dir=self.cache_dir)
        if not trainer.restore():
            raise FileNotFoundError(f"run {run_id}: checkpoint {ckpt} disappeared")
        self._cached = (run_id, ckpt, trainer)
        return trainer

    def _store(self, rid: int, event: ReplayEvent) -> None:
        with session_scope(self.factory) as s:
            run_id = s.get(Replay, rid).run_id
            lock_run(s, run_id)  # event ids in commit order (app.models.lock_run)
            if finish_replay(s, run_id, event, utcnow(), worker_id=self.worker_id) is not None:
                s.add(Event(run_id=run_id, type="replay", ref_id=rid, payload=EVENT_PAYLOADS["replay"](event)))
