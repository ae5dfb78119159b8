"""Runs keep their exchange count, steps the mean divergence of their exchanges.

``run.exchange_count``: the number of exchange rows of the run, kept by the worker's recorder in the same
transaction as the rows it adds (``_write_exchanges``) or deletes (a fresh start, the undo of work after a
resumed checkpoint). The run page showed ``COUNT(*)`` over the run's exchanges on every refresh of two of
its blocks, which at a million exchanges cost 40-90 ms each (``benchmarks/store_scale.py``). Existing runs
are counted once here. ``step.exchange_divergence``: the mean ``loss`` of the exchanges recorded with the
step that trained (the run page's divergence chart, which averaged every exchange of the run per refresh:
4 s at a million exchanges); computed once here for existing steps. And an index that covers the break-rate
summary's ``GROUP BY`` (read from the index alone: 85 -> 27 ms at 62,500 probes), and the keyset index of
the exchange list's ``tutee`` filter, the one filter without one (its page took 1.6-2.8 ms of bare SQL at a
million exchanges against 0.3-0.5 ms for the others).

Revision ID: aggregates_0007
Revises: ckpt_pruned_0006
Create Date: 2026-12-02 08:00:00+00:00
"""

from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = 'aggregates_0007'
down_revision: str | Sequence[str] | None = 'ckpt_pruned_0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BREAK_INDEX = 'ix_break_sample_run_id_summary'


def upgrade() -> None:
    op.add_column('run', sa.Column('exchange_count', sa.Integer(), nullable=False, server_default='0'))
    op.execute("UPDATE run SET exchange_count = (SELECT COUNT(*) FROM exchange WHERE exchange.run_id = run.id)")
    op.add_column('step', sa.Column('exchange_divergence', sa.Float(), nullable=True))
    op.execute("UPDATE step SET exchange_divergence = (SELECT AVG(exchange.loss) FROM exchange WHERE "
               "exchange.step_id = step.id AND exchange.skipped = false AND exchange.loss IS NOT NULL)")
    op.create_index(BREAK_INDEX, 'break_sample',
                    ['run_id', 'tutor_cognizant', 'difficulty', 'correct_without_f', 'broken'])
    op.create_index('ix_exchange_run_id_tutee_id', 'exchange', ['run_id', 'tutee', 'id'])


def downgrade() -> None:
    op.drop_index('ix_exchange_run_id_tutee_id', table_name='exchange')
    op.drop_index(BREAK_INDEX, table_name='break_sample')
    op.drop_column('step', 'exchange_divergence')
    op.drop_column('run', 'exchange_count')
