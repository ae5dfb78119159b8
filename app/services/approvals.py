"""Manual approval mode: kept feedback waiting for a human (rows written by the worker), and decisions.

A decision is a conditional UPDATE ``WHERE status = 'pending'``: the worker may time the row out at the
same moment, and exactly one of the two wins; the loser gets 409 with the status that won.
"""

from __future__ import annotations

from sqlalchemy import select, update

from app.db import session_scope
from app.errors import Conflict, Invalid
from app.models import APPROVAL_STATUSES, Approval
from app.schemas import ApprovalDecisionIn, ApprovalOut
from app.services import SessionFactory, add_event, get_row, get_run
from app.types import utcnow

_STATUS = {"approve": "approved", "reject": "rejected", "edit": "edited"}


def list_approvals(db: SessionFactory, run_id: int, status: str | None = "pending", after_id: int = 0,
                   limit: int = 500) -> tuple[list[ApprovalOut], int | None]:
    """A page of approvals, oldest first after ``after_id``, and the ``after_id`` of the next page."""
    if status is not None and status not in APPROVAL_STATUSES:
        raise Invalid.field("status", f"one of {list(APPROVAL_STATUSES)}")
    with session_scope(db) as s:
        get_run(s, run_id)
        q = select(Approval).where(Approval.run_id == run_id, Approval.id > after_id)
        if status is not None:
            q = q.where(Approval.status == status)
        rows = list(s.scalars(q.order_by(Approval.id).limit(limit + 1)))
        more = len(rows) > limit
        return [ApprovalOut.model_validate(a) for a in rows[:limit]], (rows[limit - 1].id if more else None)


def decide(db: SessionFactory, approval_id: int, req: ApprovalDecisionIn) -> ApprovalOut:
    text = None
    if req.decision == "edit":
        if req.text is None or not req.text.strip():
            raise Invalid.field("text", "an edit needs non-empty feedback text")
        text = req.text.strip()
    elif req.text is not None:
        raise Invalid.field("text", f"'{req.decision}' takes no text (use decision 'edit')")
    with session_scope(db) as s:
        ap = get_row(s, Approval, approval_id, "approval")
        status = _STATUS[req.decision]
        res = s.execute(update(Approval).where(Approval.id == approval_id, Approval.status == "pending")
                        .values(status=status, text=text, decided_by=req.author, decided_at=utcnow())
                        .execution_options(synchronize_session=False))
        if res.rowcount != 1:
            s.refresh(ap)
            raise Conflict(f"approval {approval_id} is already {ap.status}")
        add_event(s, ap.run_id, "approval", ap.id, {"status": status, "exchange_key": ap.exchange_key})
        s.flush()
        s.refresh(ap)
        return ApprovalOut.model_validate(ap)
