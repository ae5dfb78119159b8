"""Each feedback row keeps its own tutor's used part; an exchange's f is rebuilt from them (issue 17, N peers).

Since migration 0010 a rollout may carry several tutors' feedback rows (routing mode ``all``; quarantined
tutors writing in the shadow). Until now the primary row (``exchange.feedback_id``) held the f the teacher
saw, the used parts of every routed tutor joined by newlines in route order, and the primary tutor's own
part was derived from it by taking the other parts off its end: the same text stored twice, and a derived
value that could disagree with the rows it came from. From this revision every row holds its own part only
and the f is joined from the rows when it is read (``app.exchange_events.joined_used``), exactly as the
trainer joins it (``opcod_core.step_routing.tutor_feedback``).

Only rollouts with more than one feedback row change (the others are two-peer rows or a single tutor's,
where the f is the primary row's whole text either way). The rows of a rollout were inserted in route order,
the primary one first (``app.worker.rows``), so ordering by id gives the join order.

* Upgrade: the primary row's text becomes what remains once the other used parts, joined, are taken off its
  end (None when nothing remains; the whole text when it does not end with them).
* Downgrade: the primary row's text becomes the joined f again (its own part, if any, then the others).

Revision ID: feedback_own_used_0012
Revises: flows_feedback_0011
Create Date: 2026-12-12 09:00:00+00:00
"""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = 'feedback_own_used_0012'
down_revision: str | Sequence[str] | None = 'flows_feedback_0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ROWS = sa.text(
    "SELECT exchange.feedback_id, feedback.id, feedback.used_text, feedback.shadow FROM exchange "
    "JOIN feedback ON feedback.rollout_id = exchange.rollout_id "
    "WHERE exchange.feedback_id IS NOT NULL AND exchange.rollout_id IN "
    "(SELECT rollout_id FROM feedback GROUP BY rollout_id HAVING count(*) > 1) "
    "ORDER BY exchange.feedback_id, feedback.id")
_SET = sa.text("UPDATE feedback SET used_text = :used WHERE id = :id")


def _primaries() -> list[tuple[int, str | None, list[str]]]:
    """(primary row id, its text, the other rows' used parts in route order) for every multi-row rollout."""
    own: dict[int, str | None] = {}
    others: dict[int, list[str]] = defaultdict(list)
    for primary, row, used, shadow in op.get_bind().execute(_ROWS):
        if row == primary:
            own[primary] = used
        elif used and not shadow:
            others[primary].append(used)
    return [(pid, text, others[pid]) for pid, text in own.items() if others[pid]]


def _own_part(joined: str | None, others: list[str]) -> str | None:
    tail = "\n".join(others)
    if joined is None or joined == tail:
        return None
    return joined[: -len(tail) - 1] if joined.endswith("\n" + tail) else joined


def upgrade() -> None:
    changes = [{"id": pid, "used": _own_part(text, rest)} for pid, text, rest in _primaries()]
    if changes:
        op.get_bind().execute(_SET, changes)


def downgrade() -> None:
    changes = [{"id": pid, "used": "\n".join([text, *rest] if text else rest)} for pid, text, rest in _primaries()]
    if changes:
        op.get_bind().execute(_SET, changes)
