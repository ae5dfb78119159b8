"""Human work survives when the exchange it points to is redone.

Before, ``override.exchange_id`` and ``replay.exchange_id`` cascaded: when a resume (or a fresh start)
deleted the exchanges written after the checkpoint it restored, a person's exchange-level overrides and
replays of those exchanges were deleted with them. Now both keep the exchange's stable ``exchange_key``
(the trainer's key: run, round, direction, step, prompt, rollout), their ``exchange_id`` is set to NULL
when the exchange row goes, and the recorder re-links them when the redone exchange with the same key is
written (``app.worker.recorder``). ``replay.exchange_id`` becomes nullable for that. Existing rows get
their key from the exchange they point to.

Only ``override`` and ``replay`` are rebuilt on SQLite (batch mode); no table references them, so the
rebuild cascades nowhere.

Revision ID: human_work_0005
Revises: takeovers_0004
Create Date: 2026-12-01 22:30:00+00:00
"""

from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = 'human_work_0005'
down_revision: str | Sequence[str] | None = 'takeovers_0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _relink_fk(table: str, ondelete: str, nullable: bool | None = None) -> None:
    with op.batch_alter_table(table) as batch:
        if nullable is not None:
            batch.alter_column('exchange_id', existing_type=BIG_ID, nullable=nullable)
        batch.drop_constraint(f'fk_{table}_exchange_id_exchange', type_='foreignkey')
        batch.create_foreign_key(f'fk_{table}_exchange_id_exchange', 'exchange', ['exchange_id'], ['id'],
                                 ondelete=ondelete)


def upgrade() -> None:
    for table in ('override', 'replay'):
        op.add_column(table, sa.Column('exchange_key', sa.String(length=255), nullable=True))
        op.execute(f"UPDATE {table} SET exchange_key = (SELECT exchange.key FROM exchange "
                   f"WHERE exchange.id = {table}.exchange_id) WHERE exchange_id IS NOT NULL")
        op.create_index(f'ix_{table}_run_id_exchange_key', table, ['run_id', 'exchange_key'])
    _relink_fk('override', 'SET NULL')
    _relink_fk('replay', 'SET NULL', nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM replay WHERE exchange_id IS NULL")  # waiting for a redo that will not come now
    op.execute("DELETE FROM override WHERE exchange_id IS NULL AND exchange_key IS NOT NULL")
    _relink_fk('replay', 'CASCADE', nullable=False)
    _relink_fk('override', 'CASCADE')
    for table in ('override', 'replay'):
        op.drop_index(f'ix_{table}_run_id_exchange_key', table_name=table)
        with op.batch_alter_table(table) as batch:
            batch.drop_column('exchange_key')
