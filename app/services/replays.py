"""Replays: queue a recomputation of one exchange (edited feedback and/or another tutor checkpoint).

The service writes a ``replay`` row (``status='queued'``, ``inputs = {"feedback", "tutor_checkpoint"}``)
and returns at once (202); the run's own worker serves it between steps, or an idle worker loads the
run's latest checkpoint (docs/database-contract.md). A tutor checkpoint is named by its id or tag
among the run's own checkpoints, never by a path from the client; the row stores the directory of
the tutor's weights inside it (``<checkpoint>/<tutor>``), which is what ``opcod_core.replay`` loads.
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select

from app.db import session_scope
from app.errors import Conflict, Invalid, TooManyRequests
from app.models import Checkpoint, Replay, Run
from app.schemas import ReplayIn, ReplayOut
from app.services import SessionFactory, add_event, get_exchange, get_row, id_fits
from app.services.runs import pruned_message


OPEN = ("queued", "running")


def create_replay(db: SessionFactory, exchange_id: int, req: ReplayIn, max_open: int | None = None) -> ReplayOut:
    """Queue a replay; ``max_open``: the run's cap on queued + running replays (429 beyond it)."""
    if req.feedback is not None and req.feedback_text is not None and req.feedback != req.feedback_text:
        raise Invalid.field("feedback", "give feedback_text or feedback, not two different texts")
    feedback = req.feedback_text if req.feedback_text is not None else req.feedback
    with session_scope(db) as s:
        ex = get_exchange(s, exchange_id)
        if max_open is not None:
            s.execute(select(Run.id).where(Run.id == ex.run_id).with_for_update())  # serialises on PostgreSQL
            n_open = s.scalar(select(func.count()).select_from(Replay)
                              .where(Replay.run_id == ex.run_id, Replay.status.in_(OPEN))) or 0
            if n_open >= max_open:
                raise TooManyRequests(f"run {ex.run_id} already has {n_open} replays queued or running (at most "
                                      f"{max_open}, OPCOD_MAX_OPEN_REPLAYS): try again when some have finished")
        inputs: dict = {"feedback": feedback, "tutor_checkpoint": None}
        if req.tutor_checkpoint is not None:
            q = select(Checkpoint).where(Checkpoint.run_id == ex.run_id)
            ref = req.tutor_checkpoint
            if isinstance(ref, int):
                q = q.where(Checkpoint.id == ref) if id_fits(Checkpoint, ref) else q.where(False)
            else:
                q = q.where(Checkpoint.tag == ref)
            ckpt = s.scalars(q.order_by(Checkpoint.id.desc()).limit(1)).first()
            if ckpt is None:
                raise Invalid.field("tutor_checkpoint", f"no checkpoint {ref!r} in run {ex.run_id}")
            if ckpt.pruned:
                raise Conflict(pruned_message(ckpt))
            inputs.update(tutor_checkpoint=str(Path(ckpt.path) / ex.tutor), tutor_checkpoint_id=ckpt.id,
                          tutor_checkpoint_tag=ckpt.tag)
        rp = Replay(run_id=ex.run_id, exchange_id=ex.id, exchange_key=ex.key, inputs=inputs, status="queued")
        s.add(rp)
        s.flush()
        add_event(s, ex.run_id, "replay", rp.id, {"status": "queued", "exchange_id": ex.id})
        return ReplayOut.model_validate(rp)


def get_replay(db: SessionFactory, replay_id: int) -> ReplayOut:
    with session_scope(db) as s:
        return ReplayOut.model_validate(get_row(s, Replay, replay_id, "replay"))
