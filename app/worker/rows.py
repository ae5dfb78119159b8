"""The database rows of the trainer's events, one short writer per event type: ``ROW_BUILDERS`` make the
row an event adds (step, gate, eval, checkpoint; break probes, trust changes and an exchange's rollout,
feedback and exchange rows as values for bulk inserts), ``ROW_UPDATES`` update the row of a request the trainer took
(override applied, replay finished) or note the run's own changes (``RunChanges``: summary, progress).
``app.worker.recorder`` calls them in one fenced transaction per batch."""

from __future__ import annotations

import math
from typing import Any, Callable

from sqlalchemy import insert, update
from sqlalchemy.orm import Session

from app.models import Checkpoint, EvalResult, GateRecord, Metric, Override, Replay, Step
from opcod_core import events as ev
from opcod_core.vocabulary import OverrideStatus, ReplayStatus

def json_safe(value: Any) -> Any:
    """JSON-able copy with non-finite floats as None (PostgreSQL's JSONB rejects NaN/Infinity)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def storable(value: Any) -> Any:
    """Model text made storable: every NUL character (which a byte-level tokenizer can decode, and which
    PostgreSQL's text columns refuse) becomes U+FFFD, one character for one, so per-token strings keep
    their positions; lists and dicts (JSON columns) are mapped, anything else is returned as it is."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    if isinstance(value, list):
        return [storable(v) for v in value]
    if isinstance(value, dict):
        return {storable(k): storable(v) for k, v in value.items()}
    return value


def _finite(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None


def _checkpoint_round(after: list | None) -> int | None:
    return after[1] if after and len(after) > 1 and isinstance(after[1], int) else None


class RunChanges:
    """What one transaction changes on the run row (``values``: column -> value; ``exchanges_added``:
    added to the stored exchange count), written by ``Recorder._fence_and_update``."""

    def __init__(self, run_id: int) -> None:
        self.id = run_id
        self.values: dict[str, Any] = {}
        self.exchanges_added = 0



# --- one row per event type (the trainer's event -> its table) ------------------------------------------

def _step_row(run_id: int, e: ev.StepEvent) -> Step:
    return Step(run_id=run_id, round=e.round, direction=e.direction, step=e.step, global_step=e.global_step,
                tutee=e.tutee, tutor=e.tutor, loss=_finite(e.loss), metrics=json_safe(e.metrics))


def _gate_row(run_id: int, e: ev.GateEvent) -> GateRecord:
    return GateRecord(run_id=run_id, round=e.round, student=e.student, scores=json_safe(e.scores),
                      best=json_safe(e.best), delta=e.delta, tau=e.tau, mode=e.mode, decision=e.decision,
                      source=e.source, allowed_domains=e.allowed_domains, reason=e.reason, split=e.split, k=e.k,
                      note=e.note, delta_se=_finite(e.delta_se), score_se=json_safe(e.score_se),
                      n_items=json_safe(e.n_items))


def _eval_row(run_id: int, e: ev.EvalEvent) -> EvalResult:
    return EvalResult(run_id=run_id, round=e.round, student=e.student, domain=e.domain, split=e.split, k=e.k,
                      accuracy=e.accuracy, n_items=e.n_items)


def break_values(run_id: int, e: ev.BreakEvent) -> dict[str, Any]:
    """A break probe's row as values: a step has several, written in one bulk insert by the recorder."""
    return {"run_id": run_id, "exchange_key": e.exchange_key, "round": e.round, "direction": e.direction,
            "global_step": e.global_step, "tutee": e.tutee, "tutor": e.tutor, "tutor_cognizant": e.tutor_cognizant,
            "difficulty": e.difficulty, "context": e.context, "baseline": e.baseline,
            "correct_with_f": e.correct_with_f, "correct_without_f": e.correct_without_f, "broken": e.broken,
            "domain": e.domain, "shadow": bool(e.shadow)}


def trust_values(run_id: int, e: ev.TrustEvent) -> dict[str, Any]:
    """A tutor quarantined or lifted (``trust`` event) as values: bulk-inserted like the probes."""
    return {"run_id": run_id, "tutor": e.tutor, "action": e.action, "source": e.source, "step": e.step,
            "round": e.round, "reason": storable(e.reason), "domain": e.domain, "override_id": _override_id(e.override_id)}


def _override_id(value: str | None) -> int | None:
    """The override row id a trainer event names (overrides handed over by the worker are ``str(row id)``;
    anything else, e.g. a scripted control's name, names no row)."""
    return int(value) if value is not None and value.isascii() and value.isdigit() and len(value) < 10 else None


def _checkpoint_row(run_id: int, e: ev.CheckpointEvent) -> Checkpoint:
    return Checkpoint(run_id=run_id, tag=e.tag, path=e.path, next_task=e.next_task,
                      round=_checkpoint_round(e.after), events_before=e.events_before, permanent=e.permanent)


ROW_BUILDERS: dict[str, Callable[[int, Any], Any]] = {
    "step": _step_row, "gate": _gate_row, "eval": _eval_row, "checkpoint": _checkpoint_row}


# --- an exchange's rows, as values for the recorder's bulk inserts -----------------------------------------

def rollout_values(run_id: int, step_id: int, prompt_id: int, e: ev.ExchangeEvent) -> dict[str, Any]:
    return {"run_id": run_id, "step_id": step_id, "student": e.tutee, "prompt_id": prompt_id,
            "prompt_index": e.prompt_index, "rollout_index": e.rollout_index, "text": storable(e.rollout_text),
            "token_ids": list(e.token_ids), "answer": storable(e.answer), "correct": e.correct}


def feedback_values(rollout_id: int, e: ev.ExchangeEvent) -> dict[str, Any] | None:
    """The exchange's own tutor's (or a person's) feedback on its rollout, when there is any: the primary
    feedback row (``exchange.feedback_id``), as with two peers; ``used_text`` is that tutor's own part of the f
    the teacher saw: all of it with two peers, its own record's ``used`` with N-peer fields (the f is those
    parts joined in route order, ``app.exchange_events.joined_used``; migration 0012)."""
    if e.feedback_raw is None and not e.human:
        return None
    own = primary_record(e)
    used = own.get("used") if own is not None else e.feedback_used
    return {"rollout_id": rollout_id, "tutor": e.tutor, "raw": storable(e.feedback_raw), "concept": storable(e.concept),
            "category": e.category, "sanitised": storable(e.feedback_sanitised),
            "redactions": storable(json_safe(e.redactions)), "used_text": storable(used),
            "source": "human" if e.human else "model", "approval": e.approval,
            "shadow": bool(own is not None and own.get("quarantined")),
            "poisoned": bool(own is not None and own.get("poisoned"))}


def primary_record(e: ev.ExchangeEvent) -> dict[str, Any] | None:
    """The record of ``e.feedbacks`` that the event's top-level feedback fields repeat: the first one of the
    exchange's tutor (``opcod_core.step_routing``: the first routed tutor, else the first quarantined one),
    when the exchange has a primary feedback row; None without N-peer feedback records."""
    if not e.feedbacks or (e.feedback_raw is None and not e.human):
        return None
    return next((f for f in e.feedbacks if f.get("tutor") == e.tutor), None)


def peer_feedback_values(rollout_id: int, e: ev.ExchangeEvent) -> list[dict[str, Any]]:
    """The other tutors' feedback on the rollout (N peers: routing mode ``all``, quarantined tutors writing in
    the shadow), one row each in the order the trainer reported them, ``shadow`` when quarantined; ``used_text``
    is that tutor's own part of the teacher's f (None for shadow feedback, never used). None of them for an
    exchange without N-peer fields."""
    own = primary_record(e)
    return [{"rollout_id": rollout_id, "tutor": str(f.get("tutor")), "raw": storable(f.get("raw")),
             "concept": storable(f.get("concept")), "category": f.get("category"),
             "sanitised": storable(f.get("sanitised")), "redactions": storable(json_safe(f.get("redactions") or [])),
             "used_text": storable(f.get("used")), "source": "human" if f.get("source") == "human" else "model",
             "approval": f.get("approval"), "shadow": bool(f.get("quarantined")), "poisoned": bool(f.get("poisoned"))}
            for f in e.feedbacks or () if f is not own]


def exchange_values(run_id: int, e: ev.ExchangeEvent, step_id: int, rollout_id: int, feedback_id: int | None,
                     origins: dict[str, int]) -> dict[str, Any]:
    ov = e.override_id
    return {"run_id": run_id, "key": e.key, "step_id": step_id, "rollout_id": rollout_id, "feedback_id": feedback_id,
            "round": e.round, "direction": e.direction, "global_step": e.global_step, "tutee": e.tutee,
            "tutor": e.tutor, "domain": e.domain, "correct": e.correct, "category": e.category,
            "human_edited": e.human, "origin_exchange_id": origins.get(e.origin_key),
            "override_id": _override_id(ov), "s_index": e.s_index,
            "s_text": storable(e.s_text), "context_used": e.context_used, "finish_reason": e.finish_reason,
            "skipped": e.skipped, "teacher_context": storable(e.teacher_context), "tokens": storable(e.tokens),
            "student_logprob": e.student_logprob, "divergence": e.divergence,
            "divergence_s_only": e.divergence_s_only, "loss": _finite(e.loss),
            "tutors": storable(e.tutors), "quarantined": storable(e.quarantined),
            "route_reason": storable(e.route_reason)}


# --- events that update rows the web side wrote (requests the trainer took) -----------------------------

def _apply_override(s: Session, run: RunChanges, e: ev.OverrideEvent, now) -> int | None:
    if not e.id.isdigit():
        return None
    oid = int(e.id)
    s.execute(update(Override).where(Override.id == oid, Override.run_id == run.id)
              .values(status=OverrideStatus.APPLIED, applied_at=now, applied_at_step=e.applied_at_step)
              .execution_options(synchronize_session=False))
    return oid


def finish_replay(s: Session, run_id: int, e: ev.ReplayEvent, now, worker_id: int | None = None) -> int | None:
    """Store a replay's outcome on its row; the row id, or None when no row took it. With ``worker_id``
    (an idle worker's replay) only a row still ``running`` under that worker does."""
    if not e.id.isdigit():
        return None
    rid = int(e.id)
    ok = e.status == "done"
    where = [Replay.id == rid, Replay.run_id == run_id]
    if worker_id is not None:
        where += [Replay.worker_id == worker_id, Replay.status == ReplayStatus.RUNNING]
    res = s.execute(update(Replay).where(*where)
                    .values(status=e.status, result=json_safe(e.result) if ok else None,
                            error=None if ok else (e.error or "replay failed"), finished_at=now)
                    .execution_options(synchronize_session=False))
    return rid if res.rowcount == 1 else None


def _finish_replay(s: Session, run: RunChanges, e: ev.ReplayEvent, now) -> int | None:
    return finish_replay(s, run.id, e, now)


def _finish(s: Session, run: RunChanges, e: ev.FinishEvent, now) -> None:
    if e.summary is not None:
        run.values["summary"] = json_safe(e.summary)


ROW_UPDATES: dict[str, Callable[[Session, RunChanges, Any, Any], int | None]] = {
    "override": _apply_override, "replay": _finish_replay, "finish": _finish}


# --- the event row the live pages announce (SSE): a small payload per event type ------------------------

def _at(e) -> dict:
    return {"round": e.round, "direction": e.direction, "global_step": e.global_step}


EVENT_PAYLOADS: dict[str, Callable[[Any], dict]] = {
    "exchange": lambda e: {"key": e.key, **_at(e), "domain": e.domain, "correct": e.correct,
                           "category": e.category, "tutee": e.tutee, "human": e.human},
    "step": lambda e: {**_at(e), "step": e.step, "tutee": e.tutee, "tutor": e.tutor, "loss": e.loss},
    "gate": lambda e: {"round": e.round, "student": e.student, "decision": e.decision, "delta": e.delta,
                       "delta_se": e.delta_se, "tau": e.tau, "mode": e.mode, "source": e.source, "note": e.note},
    "eval": lambda e: {"round": e.round, "student": e.student, "domain": e.domain, "accuracy": e.accuracy},
    "break": lambda e: {"exchange_key": e.exchange_key, **_at(e), "broken": e.broken,
                        "eligible": e.correct_without_f},
    "checkpoint": lambda e: {"tag": e.tag, "next_task": e.next_task},
    "override": lambda e: {"status": OverrideStatus.APPLIED, "kind": e.kind, "applied_at_step": e.applied_at_step,
                           "exchange_key": e.exchange_key},
    "replay": lambda e: {"status": e.status, "exchange_key": e.exchange_key},
    "trust": lambda e: {"tutor": e.tutor, "action": e.action, "source": e.source, "step": e.step, "round": e.round,
                        "domain": e.domain, "override_id": e.override_id},
    "run_start": lambda e: {"tasks": e.tasks, "steps": e.steps},
    "resume": lambda e: {"next_task": e.next_task},
}   # finish has none: the worker writes the run's status event


def step_metrics(s: Session, run: RunChanges, steps: dict[int, Step]) -> None:
    """Each step's finite metrics as Metric rows (one bulk insert), and the run's progress at its last step."""
    metric_rows = [{"run_id": run.id, "global_step": gs, "key": key[:128], "value": v}
                   for gs in sorted(steps) for key, value in (steps[gs].metrics or {}).items()
                   if (v := _finite(value)) is not None]
    if metric_rows:
        s.execute(insert(Metric.__table__), metric_rows)
    if steps:
        last = steps[max(steps)]
        run.values["progress"] = {"round": last.round, "direction": last.direction, "step": last.step,
                        "global_step": last.global_step}
