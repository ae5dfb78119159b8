"""The run lifecycle, one owner for every transition: what a person's request (pause, resume, cancel)
does to a run in each state, which requests a page may offer, and what a worker writes when it lets a run
go (paused, cancelled, finished, failed, back to the queue at shutdown). Each rule returns the column
values to write and the ``status``/``request`` event that announces it; ``app.services.runs`` applies the
user transitions as conditional updates, ``app.worker.loop`` the worker's inside its fenced transaction.

States (``opcod_core.vocabulary.RunStatus``): queued -> running (a worker claims it) -> finished | failed |
paused | cancelled | queued (shutdown). A person pauses or cancels a queued or paused run directly and a
running one by request (``requested_action``, taken by its worker at the next step boundary); resume
queues a paused or failed run again (a failed one restarts from its last checkpoint).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from app.errors import Conflict
from opcod_core.vocabulary import FINAL_RUN_STATUSES, RunStatus

Change = tuple[dict[str, Any] | None, tuple | None]   # (column values or None: nothing to do, event or None)


def _final(run, verb: str) -> Conflict:
    return Conflict(f"run {run.id} is {run.status}: it cannot be {verb}")


def allowed_actions(status: str, requested_action: str | None) -> frozenset[str]:
    """What a person may ask of a run in this state ("pause", "resume", "cancel"): the buttons a page
    shows. The same rules as ``pause``, ``resume`` and ``cancel``, where asking anything else is a no-op
    or a 409."""
    allowed = set()
    if status == "queued" or (status == "running" and requested_action is None):
        allowed.add("pause")
    if status in ("paused", "failed") or (status == "running" and requested_action == "pause"):
        allowed.add("resume")
    if status in ("queued", "paused") or (status == "running" and requested_action != "cancel"):
        allowed.add("cancel")
    return frozenset(allowed)


def pause(run, now: datetime) -> Change:
    """A person pauses the run: at once when queued, by request when running."""
    if run.status == "queued":
        return {"status": "paused", "requested_action": None}, ("status", None, {"status": "paused"})
    if run.status == "running":
        if run.requested_action == "pause":
            return None, None
        if run.requested_action == "cancel":
            raise Conflict(f"run {run.id} is being cancelled")
        return {"requested_action": "pause"}, ("request", None, {"requested_action": "pause"})
    if run.status == "paused":
        return None, None
    raise _final(run, "paused")


def resume(run, now: datetime) -> Change:
    """A person resumes the run: a paused or failed one is queued again; a pause not yet taken is withdrawn."""
    if run.status == "paused":
        return {"status": "queued", "requested_action": None}, ("status", None, {"status": "queued"})
    if run.status == "running":
        if run.requested_action == "pause":  # the pause was not taken yet: withdraw it
            return {"requested_action": None}, ("request", None, {"requested_action": None})
        if run.requested_action == "cancel":
            raise Conflict(f"run {run.id} is being cancelled")
        return None, None
    if run.status == "queued":
        return None, None
    if run.status == "failed":  # retried from its last checkpoint by the worker that claims it
        return ({"status": "queued", "requested_action": None, "error": None, "finished_at": None, "takeovers": 0},
                ("status", None, {"status": "queued", "retry_of": "failed"}))
    raise _final(run, "resumed")


def cancel(run, now: datetime) -> Change:
    """A person cancels the run: at once when queued or paused, by request when running."""
    if run.status in ("queued", "paused"):
        return ({"status": "cancelled", "requested_action": None, "worker_id": None, "finished_at": now},
                ("status", None, {"status": "cancelled"}))
    if run.status == "running":
        if run.requested_action == "cancel":
            return None, None
        return {"requested_action": "cancel"}, ("request", None, {"requested_action": "cancel"})
    if run.status == "cancelled":
        return None, None
    raise _final(run, "cancelled")


def worker_release(run, status: str, now: datetime, *, shutdown: bool = False, error: str | None = None) -> Change:
    """A worker lets go of the run it held, with the trainer's outcome ``status``; a cancel requested after
    the trainer paused wins. Returns the values and the ``status`` event (which says it was a shutdown and
    the error's first line)."""
    if status == RunStatus.PAUSED and run.requested_action == "cancel":
        status = RunStatus.CANCELLED
    status = str(status)
    values: dict[str, Any] = {"status": status, "worker_id": None, "requested_action": None}
    if status in FINAL_RUN_STATUSES:
        values["finished_at"] = now
    if status == RunStatus.FAILED:
        values["error"] = error
    payload: dict[str, Any] = {"status": status}
    if shutdown:
        values["progress"] = {**(run.progress or {}), "paused_by": "shutdown"}
        payload["paused_by"] = "shutdown"
    if error:
        payload["error"] = error.split("\n", 1)[0][:500]
    return values, ("status", None, payload)
