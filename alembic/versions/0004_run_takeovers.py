"""Runs count the takeovers they needed.

``run.takeovers``: how many times a worker took the run over from a worker that had died holding it (its
heartbeat went stale). A run whose workers keep dying (out of memory, killed) is failed after
``settings.max_takeovers`` instead of being retried by every worker for ever (``app.worker.claim``).
Existing runs start at 0.

Revision ID: takeovers_0004
Revises: monitors_0002
Create Date: 2026-12-01 22:00:00+00:00
"""

from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = 'takeovers_0004'
down_revision: str | Sequence[str] | None = 'monitors_0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


# Plain ALTER TABLE (SQLite >= 3.35 drops a column in place): a batch migration would recreate ``run``, and
# dropping the old table cascades to every child row (exchanges, steps, overrides) on SQLite with foreign
# keys on.
def upgrade() -> None:
    op.add_column('run', sa.Column('takeovers', sa.Integer(), nullable=False, server_default='0'))


def downgrade() -> None:
    op.drop_column('run', 'takeovers')
