"""Worker liveness for the API and the dashboard: which worker processes are alive and what they hold.

A worker refreshes its row every ``heartbeat_s`` (``app.worker.claim.Heartbeat``), idle or busy; it is
*alive* when it has not marked itself stopped and its heartbeat is newer than ``stale_after_s`` (the same
rule by which its run would be taken over). A worker that died without stopping stays listed, not alive,
for ``recent_s`` so that its death is visible."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from app.db import session_scope
from app.models import Run, Worker
from app.schemas_workers import WorkerOut, WorkersOut
from app.services import SessionFactory
from app.types import utcnow

RECENT_S = 24 * 3600


def list_workers(db: SessionFactory, stale_after_s: float, include_stopped: bool = False,
                 recent_s: float = RECENT_S) -> WorkersOut:
    """Workers seen within ``recent_s`` (stopped ones only with ``include_stopped``), newest first."""
    now = utcnow()
    fresh_after = now - timedelta(seconds=stale_after_s)
    with session_scope(db) as s:
        q = select(Worker).where(Worker.heartbeat_at >= now - timedelta(seconds=recent_s))
        if not include_stopped:
            q = q.where(Worker.status != "stopped")
        workers = s.scalars(q.order_by(Worker.id.desc()).limit(500)).all()
        held = dict(s.execute(select(Run.worker_id, Run.id).where(
            Run.status == "running", Run.worker_id.in_([w.id for w in workers]))).all()) if workers else {}
        items = [WorkerOut(id=w.id, name=w.name, hostname=w.hostname, pid=w.pid, status=w.status,
                           started_at=w.started_at, heartbeat_at=w.heartbeat_at,
                           alive=w.status != "stopped" and w.heartbeat_at >= fresh_after, run_id=held.get(w.id))
                 for w in workers]
    alive = [w for w in items if w.alive]
    return WorkersOut(items=items, alive=len(alive), busy=sum(1 for w in alive if w.run_id is not None))


__all__ = ["list_workers"]
