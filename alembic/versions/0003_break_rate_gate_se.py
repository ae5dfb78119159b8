"""Break samples say what they compare; gate records carry standard errors.

* ``break_sample``: ``correct_with_sf`` / ``correct_with_s`` become ``correct_with_f`` /
  ``correct_without_f`` (in context mode f the teacher never had s; the baseline is the teacher context
  without f), plus ``context`` (s+f | f) and ``baseline`` (s | none). The break rate is now
  broken / correct_without_f (``opcod_core.breakrate``). Rows written before keep their verdicts;
  their ``context`` and ``baseline`` are NULL (unknown).
* ``gate_record``: ``delta_se`` (bootstrap SE of Δ), ``score_se`` (SE of each domain score) and
  ``n_items`` (validation questions per domain), NULL for records written before.

Written without importing app code (like 0001).

Revision ID: monitors_0002
Revises: eos_finish_reason
Create Date: 2026-11-27 10:00:00+00:00
"""

from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = 'monitors_0002'
down_revision: str | Sequence[str] | None = 'eos_finish_reason'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON_T = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    with op.batch_alter_table('break_sample') as batch:
        batch.alter_column('correct_with_sf', new_column_name='correct_with_f', existing_type=sa.Boolean(),
                           existing_nullable=False)
        batch.alter_column('correct_with_s', new_column_name='correct_without_f', existing_type=sa.Boolean(),
                           existing_nullable=False)
        batch.add_column(sa.Column('context', sa.String(length=8), nullable=True))
        batch.add_column(sa.Column('baseline', sa.String(length=8), nullable=True))
    with op.batch_alter_table('gate_record') as batch:
        batch.add_column(sa.Column('delta_se', sa.Float(), nullable=True))
        batch.add_column(sa.Column('score_se', JSON_T, nullable=True))
        batch.add_column(sa.Column('n_items', JSON_T, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('gate_record') as batch:
        batch.drop_column('n_items')
        batch.drop_column('score_se')
        batch.drop_column('delta_se')
    with op.batch_alter_table('break_sample') as batch:
        batch.drop_column('baseline')
        batch.drop_column('context')
        batch.alter_column('correct_without_f', new_column_name='correct_with_s', existing_type=sa.Boolean(),
                           existing_nullable=False)
        batch.alter_column('correct_with_f', new_column_name='correct_with_sf', existing_type=sa.Boolean(),
                           existing_nullable=False)
