"""Checkpoints say when their files were pruned.

``checkpoint.pruned``: the files of this checkpoint were deleted by the retention policy (only the newest
``keep_checkpoints`` step checkpoints stay; ``opcod_core.checkpoint``). The worker marks rows when it writes a
checkpoint; forks and replays from a pruned checkpoint are refused with 409 instead of failing later in a
worker. Existing rows start unpruned (the next checkpoint of their run marks them).

Revision ID: ckpt_pruned_0006
Revises: human_work_0005
Create Date: 2026-12-01 23:00:00+00:00
"""

from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = 'ckpt_pruned_0006'
down_revision: str | Sequence[str] | None = 'human_work_0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column('checkpoint', sa.Column('pruned', sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    op.drop_column('checkpoint', 'pruned')
