"""Overrides: human control requests, validated here and applied by the worker between steps.

Exchange-level (``edit`` with text, ``reject``, ``approve``) and run-level (``force_tutor``,
``mute_tutor``, ``clear_tutor`` on a student of the run; ``quarantine`` and ``lift`` of a student as tutor,
with an optional reason as ``value``; ``set_tau``; ``set_mode``). Each request is
one ``override`` row (``status='pending'``, ``author``, ``created_at``) plus an ``override`` event in
the same transaction: the row *is* the audit record, and the worker completes it with ``applied_at``
and ``applied_at_step`` (docs/database-contract.md). Requests on a run that can no longer apply them
(finished, failed, cancelled) are refused with 409 instead of being stored to wait forever.
"""

from __future__ import annotations

import math
from typing import get_args

from pydantic import ValidationError
from sqlalchemy import select

from app.db import session_scope
from app.errors import Conflict, Invalid
from app.models import Override, Run
from app.schemas import ExchangeOverrideIn, OverrideOut, RunOverrideIn
from app.services import SessionFactory, add_event, get_exchange, get_row, get_run
from opcod_core.config import GatingConfig
from opcod_core.vocabulary import FINAL_RUN_STATUSES, MAX_REASON, TRUST_OVERRIDE_KINDS, TUTOR_OVERRIDE_KINDS

GATING_MODES: tuple[str, ...] = get_args(GatingConfig.model_fields["mode"].annotation)


def _check_open(run: Run) -> None:
    if run.status in FINAL_RUN_STATUSES:
        raise Conflict(f"run {run.id} is {run.status}: overrides can no longer be applied")


def _text(text: str | None, what: str = "text") -> str:
    if text is None or not text.strip():
        raise Invalid.field(what, "an edit needs non-empty feedback text")
    return text.strip()


def _reason(value: float | str | None) -> str | None:
    """A quarantine's or lift's reason: text of at most ``MAX_REASON`` characters, or none (empty: none)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise Invalid.field("value", "the reason of a quarantine or lift is text")
    reason = value.strip()
    if len(reason) > MAX_REASON:
        raise Invalid.field("value", f"the reason has {len(reason)} characters (at most {MAX_REASON})")
    return reason or None


def _store(session, run_id: int, exchange_id: int | None, kind: str, payload: dict, author: str,
           exchange_key: str | None = None) -> OverrideOut:
    ov = Override(run_id=run_id, exchange_id=exchange_id, exchange_key=exchange_key, kind=kind, payload=payload,
                  author=author, status="pending")
    session.add(ov)
    session.flush()
    add_event(session, run_id, "override", ov.id,
              {"kind": kind, "exchange_id": exchange_id, "status": "pending", "author": author})
    return OverrideOut.model_validate(ov)


def create_exchange_override(db: SessionFactory, exchange_id: int, req: ExchangeOverrideIn) -> OverrideOut:
    with session_scope(db) as s:
        ex = get_exchange(s, exchange_id)
        _check_open(get_run(s, ex.run_id))
        if req.kind == "edit":
            payload = {"text": _text(req.text)}
        else:
            if req.text is not None:
                raise Invalid.field("text", f"'{req.kind}' takes no text (use kind 'edit')")
            if ex.feedback_id is None:
                raise Invalid.field("kind", f"exchange {exchange_id} has no feedback to {req.kind}; "
                                    "use 'edit' to give it one")
            payload = {}
        return _store(s, ex.run_id, ex.id, req.kind, payload, req.author, exchange_key=ex.key)


def create_run_override(db: SessionFactory, run_id: int, req: RunOverrideIn) -> OverrideOut:
    with session_scope(db) as s:
        run = get_run(s, run_id)
        _check_open(run)
        if req.kind in TUTOR_OVERRIDE_KINDS:
            names = [st.name for st in run.students]
            if req.student is None:
                raise Invalid.field("student", f"'{req.kind}' needs a student (one of {names})")
            if req.student not in names:
                raise Invalid.field("student", f"'{req.student}' is not a student of run {run_id} (one of {names})")
            payload = {"student": req.student}
            if req.kind in TRUST_OVERRIDE_KINDS:
                reason = _reason(req.value)
                if reason is not None:
                    payload["value"] = reason
            elif req.value is not None:
                raise Invalid.field("value", f"'{req.kind}' takes no value")
        else:
            if req.student is not None:
                raise Invalid.field("student", f"'{req.kind}' takes no student")
            if req.kind == "set_tau":
                if isinstance(req.value, str) or req.value is None or not math.isfinite(req.value):
                    raise Invalid.field("value", "set_tau needs a number")
                try:
                    GatingConfig(tau=req.value)
                except ValidationError as err:
                    raise Invalid.field("value", err.errors()[0]["msg"]) from None
                payload = {"value": float(req.value)}
            else:
                if req.value not in GATING_MODES:
                    raise Invalid.field("value", f"set_mode needs one of {list(GATING_MODES)}")
                payload = {"value": req.value}
        return _store(s, run_id, None, req.kind, payload, req.author)


def list_overrides(db: SessionFactory, run_id: int, status: str | None = None, after_id: int = 0,
                   limit: int = 500) -> tuple[list[OverrideOut], int | None]:
    """A page of the audit log, oldest first after ``after_id``, and the ``after_id`` of the next page."""
    with session_scope(db) as s:
        get_run(s, run_id)
        q = select(Override).where(Override.run_id == run_id, Override.id > after_id)
        if status is not None:
            q = q.where(Override.status == status)
        rows = list(s.scalars(q.order_by(Override.id).limit(limit + 1)))
        more = len(rows) > limit
        return [OverrideOut.model_validate(o) for o in rows[:limit]], (rows[limit - 1].id if more else None)


def get_override(db: SessionFactory, override_id: int) -> OverrideOut:
    with session_scope(db) as s:
        return OverrideOut.model_validate(get_row(s, Override, override_id, "override"))
