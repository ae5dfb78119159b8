"""exchange.finish_reason: how the exchange's rollout ended (eos | stop | length).

Nullable: exchanges stored before this revision did not record it, and the dashboard shows them as
unknown rather than guessing. One column, no index (a property shown per exchange, not a filter).

Revision ID: eos_finish_reason
Revises: 0001
Create Date: 2026-12-02 09:30:00+00:00
"""

from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "eos_finish_reason"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("exchange", sa.Column("finish_reason", sa.String(length=16), nullable=True))


def downgrade() -> None:
    # a plain ALTER TABLE ... DROP COLUMN (SQLite >= 3.35 and PostgreSQL): a batch copy of the table
    # would drop and re-create it, which cascades to the rows that reference exchanges
    op.drop_column("exchange", "finish_reason")
