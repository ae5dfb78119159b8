"""Runs: create (full config or preset + overrides), list, read, pause/resume/cancel, fork.

State changes follow docs/database-contract.md exactly. Every change is a *conditional* UPDATE on the
status the service saw (``WHERE id = ? AND status = ?``), retried on a lost race, because a worker may
claim or finish the run between our read and our write: a queued run that a worker has just claimed
must get ``requested_action`` instead of having its status overwritten under the worker's feet.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import func, select, update

from app import lifecycle
from app.db import session_scope
from app.errors import Conflict, Invalid, NotFound
from app.models import Approval, Checkpoint, GateRecord, Override, Replay, Run, Step, Student
from app.schemas import (
    BreakCounts,
    BreakRateOut,
    CheckpointOut,
    ForkRequest,
    GateOut,
    PresetOut,
    Progress,
    RunCreateFromPreset,
    run_create_kind,
    RunDetail,
    RunOut,
    RunPage,
    StudentOut,
)
from app.services import SessionFactory, add_event, check_storable, decode_cursor, encode_cursor, get_run, id_fits
from app.services import MAX_INT_ID, keyset_page
from app.services.metrics import break_summary
from app.services.run_policy import RunPolicy
from app.types import utcnow
from opcod_core.config import RunConfig, preset, preset_names
from opcod_core.vocabulary import task_count

_RETRIES = 5
_PROGRESS_KEYS = ("round", "direction", "step", "global_step")


# --- config validation -------------------------------------------------------------------------------

def config_from_body(body: Any) -> RunConfig:
    """A validated ``RunConfig`` from a ``POST /runs`` body (full config, or preset + overrides)."""
    if not isinstance(body, dict):
        raise Invalid.field("(body)", "expected a JSON object: a full run config or {\"preset\", \"overrides\"}")
    if run_create_kind(body) == "preset":
        # errors name config paths (``rollout.n``), as for a full config: overrides mirror the config
        check_storable({k: v for k, v in body.items() if k != "overrides"})
        check_storable(body.get("overrides"))
        try:
            req = RunCreateFromPreset.model_validate(body)
        except ValidationError as err:
            raise Invalid.from_validation_error(err, message="invalid request") from None
        if req.preset not in preset_names():
            raise Invalid.field("preset", f"unknown preset '{req.preset}' (known: {', '.join(preset_names())})")
        overrides = dict(req.overrides)
        if req.name is not None:
            overrides["name"] = req.name
        try:
            return preset(req.preset, overrides)
        except ValidationError as err:
            raise Invalid.from_validation_error(err) from None
        except (TypeError, ValueError) as err:
            raise Invalid.field("overrides", str(err)) from None
    check_storable(body)
    try:
        return RunConfig.model_validate(body)
    except ValidationError as err:
        raise Invalid.from_validation_error(err) from None


def total_tasks(cfg: RunConfig) -> int:
    """1 initial evaluation + per round: the gate, N x K steps (one direction per student), the round's
    evaluation (the contract; ``opcod_core.vocabulary.task_count``)."""
    return task_count(cfg.schedule.rounds, cfg.schedule.steps_per_direction, peers=len(cfg.students))


def _new_run(session, cfg: RunConfig, runs_dir: Path | None, **extra) -> Run:
    run = Run(name=cfg.name, preset=cfg.preset, config=cfg.to_dict(), status="queued",
              total_tasks=total_tasks(cfg), next_task=0, **extra)
    run.students = [Student(position=i, name=st.name, model_ref=st.model, strong_domain=st.strong_domain)
                    for i, st in enumerate(cfg.students)]
    session.add(run)
    session.flush()
    if runs_dir is not None:
        run.out_dir = str(Path(runs_dir) / str(run.id))
    add_event(session, run.id, "status", None, {"status": "queued"})
    return run


# --- read models ---------------------------------------------------------------------------------------

def _progress(run: Run) -> Progress:
    p = dict(run.progress or {})
    done, total = run.next_task or 0, run.total_tasks
    known = {k: p.pop(k) for k in _PROGRESS_KEYS if k in p}
    fraction = 1.0 if run.status == "finished" else (min(done / total, 1.0) if total else 0.0)
    return Progress(**{k: v for k, v in known.items() if isinstance(v, int)}, tasks_done=done,
                    tasks_total=total, fraction=fraction, extra=p)


def run_out(run: Run) -> RunOut:
    return RunOut.model_validate({**_columns(run), "progress": _progress(run)})


def _columns(run: Run) -> dict[str, Any]:
    return {c: getattr(run, c) for c in RunOut.model_fields if c != "progress"}


def _detail(session, run: Run) -> RunDetail:
    gates = session.scalars(select(GateRecord).where(GateRecord.run_id == run.id).order_by(GateRecord.id)).all()
    last = session.scalars(select(Step).where(Step.run_id == run.id).order_by(Step.global_step.desc()).limit(1)).first()
    latest: dict[str, float] = {}
    if last is not None:
        latest = {k: float(v) for k, v in (last.metrics or {}).items()
                  if isinstance(v, (int, float)) and not isinstance(v, bool)}
        if last.loss is not None:
            latest.setdefault("loss", float(last.loss))

    def count(model, *where) -> int:
        return session.scalar(select(func.count()).select_from(model).where(model.run_id == run.id, *where)) or 0

    counts = {"pending_overrides": count(Override, Override.status == "pending"),
              "pending_approvals": count(Approval, Approval.status == "pending"),
              "open_replays": count(Replay, Replay.status.in_(("queued", "running")))}
    return RunDetail.model_validate({
        **_columns(run), "progress": _progress(run), "config": run.config, "out_dir": run.out_dir,
        "summary": run.summary, "students": [StudentOut.model_validate(s) for s in run.students],
        "gates": [GateOut.model_validate(g) for g in gates], "latest_metrics": latest,
        "break_rate": _break_rate(session, run.id),
        "latest_step": last.global_step if last is not None else None, "counts": counts})


def _break_rate(session, run_id: int) -> BreakRateOut:
    b = break_summary(session, run_id)
    return BreakRateOut(**{k: b[k] for k in ("samples", "eligible", "broken", "rate")},
                        by_cognizance={k: BreakCounts(**v) for k, v in b["by_cognizance"].items()})


# --- use cases -----------------------------------------------------------------------------------------

def create_run(db: SessionFactory, body: Any, runs_dir: Path | None = None,
               policy: RunPolicy | None = None) -> RunDetail:
    """A queued run from a ``POST /runs`` body; ``policy``: what the server lets the config reach."""
    cfg = config_from_body(body)
    if policy is not None:
        policy.check(cfg)
    with session_scope(db) as s:
        run = _new_run(s, cfg, runs_dir)
        return _detail(s, run)


def list_runs(db: SessionFactory, status: str | None = None, cursor: str | None = None,
              limit: int = 50) -> RunPage:
    before = decode_cursor(cursor)
    with session_scope(db) as s:
        q = select(Run) if status is None else select(Run).where(Run.status == status)
        rows, more = keyset_page(s, q, Run.id, limit,
                                 before=before if before is not None and before <= MAX_INT_ID else None)
        return RunPage(items=[run_out(r) for r in rows],
                       next_cursor=encode_cursor(rows[-1].id) if more and rows else None)


def get_run_detail(db: SessionFactory, run_id: int) -> RunDetail:
    with session_scope(db) as s:
        return _detail(s, get_run(s, run_id))


def _transition(db: SessionFactory, run_id: int, decide) -> RunDetail:
    """Apply ``decide(run, now) -> (values | None, event | None)`` (``app.lifecycle``) as a conditional update on the run's
    (status, requested_action) as read; retried when a worker changed the run in between."""
    for _ in range(_RETRIES):
        with session_scope(db) as s:
            run = get_run(s, run_id)
            values, event = decide(run, utcnow())
            if values is None:  # nothing to change (idempotent repeat)
                return _detail(s, run)
            res = s.execute(update(Run).where(Run.id == run_id, Run.status == run.status,
                                              Run.requested_action.is_(None) if run.requested_action is None
                                              else Run.requested_action == run.requested_action)
                            .values(**values, updated_at=utcnow())
                            .execution_options(synchronize_session=False))
            if res.rowcount != 1:
                s.rollback()
                continue
            if event is not None:
                add_event(s, run_id, *event)
            s.flush()
            s.refresh(run)
            return _detail(s, run)
    raise Conflict(f"run {run_id} kept changing while we tried to update it; try again")


def pause_run(db: SessionFactory, run_id: int) -> RunDetail:
    return _transition(db, run_id, lifecycle.pause)


def resume_run(db: SessionFactory, run_id: int) -> RunDetail:
    return _transition(db, run_id, lifecycle.resume)


def cancel_run(db: SessionFactory, run_id: int) -> RunDetail:
    return _transition(db, run_id, lifecycle.cancel)


def list_checkpoints(db: SessionFactory, run_id: int, before_id: int | None = None,
                     limit: int = 500) -> tuple[list[CheckpointOut], int | None]:
    """A page of checkpoints, newest first before ``before_id``, and the ``before_id`` of the next page."""
    with session_scope(db) as s:
        get_run(s, run_id)
        q = select(Checkpoint).where(Checkpoint.run_id == run_id)
        if before_id is not None:
            q = q.where(Checkpoint.id < before_id)
        rows = list(s.scalars(q.order_by(Checkpoint.id.desc()).limit(limit + 1)))
        more = len(rows) > limit
        return [CheckpointOut.model_validate(c) for c in rows[:limit]], (rows[limit - 1].id if more else None)


def delete_run(db: SessionFactory, run_id: int, runs_dir: Path | None = None) -> None:
    """Delete a run that is not running: its rows (cascade) and then its directory under ``runs_dir``. A
    running run must be cancelled first; a queued fork that has not yet copied one of its checkpoints keeps
    it alive (409 naming the fork)."""
    with session_scope(db) as s:
        run = get_run(s, run_id)
        if run.status == "running":
            raise Conflict(f"run {run_id} is running: cancel it first (POST /runs/{run_id}/cancel)")
        waiting = s.scalars(select(Run.id).where(Run.parent_run_id == run_id, Run.status == "queued",
                                                 Run.started_at.is_(None))).all()
        if waiting:
            raise Conflict(f"run {run_id}'s checkpoint is waiting to be forked by run(s) "
                           f"{', '.join(map(str, waiting))}: cancel or start them first")
        out_dir = Path(run.out_dir) if run.out_dir else None
        s.delete(run)
    for path in {p for p in (out_dir, Path(runs_dir) / str(run_id) if runs_dir else None) if p is not None}:
        if runs_dir is None or path.resolve().is_relative_to(Path(runs_dir).resolve()):
            shutil.rmtree(path, ignore_errors=True)  # what is left (an error) is an orphan for ``opcod gc``


def pruned_message(ckpt: Checkpoint) -> str:
    return (f"checkpoint {ckpt.id} ({ckpt.tag}) of run {ckpt.run_id} was pruned by the retention policy (only the "
            "newest keep_checkpoints step checkpoints and the round-end ones are kept): choose another one")


def fork_run(db: SessionFactory, run_id: int, req: ForkRequest, runs_dir: Path | None = None,
             policy: RunPolicy | None = None) -> RunDetail:
    """A new queued run that starts from one of the parent's checkpoints with config overrides.

    The fork records ``parent_run_id`` and ``fork_checkpoint`` (the checkpoint directory); the worker
    that claims it starts from that checkpoint instead of from scratch. Students cannot change (the
    checkpoint holds their weights)."""
    with session_scope(db) as s:
        parent = get_run(s, run_id)
        q = select(Checkpoint).where(Checkpoint.run_id == run_id)
        if req.checkpoint_id is not None:
            ckpt = s.scalars(q.where(Checkpoint.id == req.checkpoint_id)).first() if id_fits(
                Checkpoint, req.checkpoint_id) else None
            if ckpt is None:
                raise NotFound(f"checkpoint {req.checkpoint_id} of run {run_id} not found")
            if ckpt.pruned:
                raise Conflict(pruned_message(ckpt))
        else:
            ckpt = s.scalars(q.where(Checkpoint.pruned.is_(False)).order_by(Checkpoint.id.desc()).limit(1)).first()
            if ckpt is None:
                raise Conflict(f"run {run_id} has no checkpoint to fork from yet")
        try:
            base = RunConfig.model_validate(parent.config)
        except ValidationError as err:  # a stored config that no longer validates (older version)
            raise Conflict(f"run {run_id}'s stored config is no longer valid: {err.errors()[0]['msg']}") from None
        check_storable(req.overrides, "overrides")
        overrides = dict(req.overrides)
        overrides["name"] = req.name or overrides.get("name") or f"{parent.name} (fork of #{run_id})"[:120]
        try:
            cfg = base.replace(overrides)
        except ValidationError as err:
            raise Invalid.from_validation_error(err, prefix=("overrides",)) from None
        except (TypeError, ValueError) as err:
            raise Invalid.field("overrides", str(err)) from None
        if policy is not None:
            policy.check(cfg, prefix="overrides.")
        if [(st.name, st.model) for st in cfg.students] != [(st.name, st.model) for st in base.students]:
            raise Invalid.field("overrides.students", "a fork keeps the parent's students (names and models)")
        run = _new_run(s, cfg, runs_dir, parent_run_id=parent.id, fork_checkpoint=ckpt.path)
        return _detail(s, run)


def presets() -> list[PresetOut]:
    return [PresetOut(name=n, config=preset(n).to_dict()) for n in preset_names()]
