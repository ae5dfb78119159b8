"""``feedback.poisoned``: feedback a benchmark fault replaced (issue 17, the trio benchmark's poisoned variant).

``faults.poison`` (``opcod_core.faults``) replaces one tutor's feedback with a corrupted hint from a given
step on, and the trainer marks each such record ``"poisoned": true`` in the exchange event's ``feedbacks``.
A served run can be configured with the fault, so the store keeps the mark: the export then gives the events
back as the trainer wrote them and the exchange page shows which feedback was poisoned. Existing rows were
written before any run could store the mark: ``false``.

Downgrade drops the column (the marks are lost; every row and its text stays).

Revision ID: feedback_poisoned_0013
Revises: feedback_own_used_0012
Create Date: 2026-12-13 09:00:00+00:00
"""

from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = 'feedback_poisoned_0013'
down_revision: str | Sequence[str] | None = 'feedback_own_used_0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('feedback', sa.Column('poisoned', sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    op.drop_column('feedback', 'poisoned')
