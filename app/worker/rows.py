"""The database rows of the trainer's events, one short writer per event type: ``ROW_BUILDERS`` make the
row an event adds (step, gate, eval, break probe, checkpoint), ``ROW_UPDATES`` update the row of a request
the trainer took (override applied, replay finished, run summary). ``app.worker.recorder`` calls them in
one fenced transaction per batch."""

from __future__ import annotations

import math
from typing import Any, Callable

from sqlalchemy import update
from sqlalchemy.orm import Session

from app.models import BreakSample, Checkpoint, EvalResult, GateRecord, Metric, Override, Replay, Run, Step

def json_safe(value: Any) -> Any:
    """JSON-able copy with non-finite floats as None (PostgreSQL's JSONB rejects NaN/Infinity)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def _finite(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) else None


def _checkpoint_round(after: list | None) -> int | None:
    return after[1] if after and len(after) > 1 and isinstance(after[1], int) else None


# --- one row per event type (the trainer's event -> its table) ------------------------------------------

def _step_row(run_id: int, e: dict) -> Step:
    return Step(run_id=run_id, round=e["round"], direction=e["direction"], step=e["step"],
                global_step=e["global_step"], tutee=e["tutee"], tutor=e["tutor"],
                loss=_finite(e.get("loss")), metrics=json_safe(e.get("metrics") or {}))


def _gate_row(run_id: int, e: dict) -> GateRecord:
    return GateRecord(run_id=run_id, round=e["round"], student=e["student"], scores=json_safe(e["scores"]),
                      best=json_safe(e["best"]), delta=e["delta"], tau=e["tau"], mode=e["mode"],
                      decision=e["decision"], source=e.get("source") or "auto",
                      allowed_domains=e.get("allowed_domains"), reason=e.get("reason") or "",
                      split=e.get("split"), k=e.get("k"), note=e.get("note"),
                      delta_se=_finite(e.get("delta_se")), score_se=json_safe(e.get("score_se")),
                      n_items=json_safe(e.get("n_items")))


def _eval_row(run_id: int, e: dict) -> EvalResult:
    return EvalResult(run_id=run_id, round=e["round"], student=e["student"], domain=e["domain"],
                      split=e.get("split") or "test", k=e["k"], accuracy=e["accuracy"], n_items=e.get("n_items") or 0)


def _break_row(run_id: int, e: dict) -> BreakSample:
    return BreakSample(run_id=run_id, exchange_key=e["exchange_key"], round=e["round"], direction=e["direction"],
                       global_step=e["global_step"], tutee=e["tutee"], tutor=e["tutor"],
                       tutor_cognizant=bool(e["tutor_cognizant"]), difficulty=e["difficulty"],
                       context=e.get("context"), baseline=e.get("baseline"), correct_with_f=bool(e["correct_with_f"]),
                       correct_without_f=bool(e["correct_without_f"]), broken=bool(e["broken"]))


def _checkpoint_row(run_id: int, e: dict) -> Checkpoint:
    return Checkpoint(run_id=run_id, tag=e["tag"], path=e["path"], next_task=e["next_task"],
                      round=_checkpoint_round(e.get("after")), events_before=e.get("events_before"),
                      permanent=bool(e.get("permanent")))


ROW_BUILDERS: dict[str, Callable[[int, dict], Any]] = {
    "step": _step_row, "gate": _gate_row, "eval": _eval_row, "break": _break_row, "checkpoint": _checkpoint_row}


# --- events that update rows the web side wrote (requests the trainer took) -----------------------------

def _apply_override(s: Session, run: Run, e: dict, now) -> int | None:
    if not str(e.get("id", "")).isdigit():
        return None
    oid = int(e["id"])
    s.execute(update(Override).where(Override.id == oid, Override.run_id == run.id)
              .values(status="applied", applied_at=now, applied_at_step=e.get("applied_at_step"))
              .execution_options(synchronize_session=False))
    return oid


def _finish_replay(s: Session, run: Run, e: dict, now) -> int | None:
    if not str(e.get("id", "")).isdigit():
        return None
    rid = int(e["id"])
    ok = e.get("status") == "done"
    s.execute(update(Replay).where(Replay.id == rid, Replay.run_id == run.id)
              .values(status="done" if ok else "failed", result=json_safe(e.get("result")) if ok else None,
                      error=None if ok else (e.get("error") or "replay failed"), finished_at=now)
              .execution_options(synchronize_session=False))
    return rid


def _finish(s: Session, run: Run, e: dict, now) -> None:
    if e.get("summary") is not None:
        run.summary = json_safe(e["summary"])


ROW_UPDATES: dict[str, Callable[[Session, Run, dict, Any], int | None]] = {
    "override": _apply_override, "replay": _finish_replay, "finish": _finish}


def step_metrics(s: Session, run: Run, steps: dict[int, Step]) -> None:
    """Each step's finite metrics as Metric rows, and the run's progress at its last step."""
    for gs in sorted(steps):
        for key, value in (steps[gs].metrics or {}).items():
            v = _finite(value)
            if v is not None:
                s.add(Metric(run_id=run.id, global_step=gs, key=key[:128], value=v))
    if steps:
        last = steps[max(steps)]
        run.progress = {"round": last.round, "direction": last.direction, "step": last.step,
                        "global_step": last.global_step}
