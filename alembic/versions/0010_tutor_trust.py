"""Tutor trust and every tutor's feedback (issue 17: co-distillation among N peers).

What the trainer's events carry and the recorder dropped until now:

* ``trust_change``: one row per ``trust`` event (a tutor quarantined or lifted, automatically from its break
  probes or by a person's run-level ``quarantine`` / ``lift`` override, which ``override_id`` names).
* ``feedback.shadow``: an exchange keeps one feedback row per tutor that wrote (routing mode ``all``; a
  quarantined tutor writing in the shadow); ``shadow`` marks a quarantined tutor's feedback, stored and
  probed but never used. Existing rows were all used or discarded by anchoring: ``false``.
* ``exchange.tutors`` / ``quarantined`` / ``route_reason``: the exchange's route (NULL for exchanges without
  N-peer fields: every existing one).
* ``break_sample.domain`` (the tutee question's domain, what trust counts by; filled here from the probed
  exchange where it is stored) and ``break_sample.shadow`` (a probe of shadow feedback; existing: ``false``),
  with an index that covers the trust read's ``GROUP BY`` (``app.services.trust``).

Downgrade drops the table and the columns: the trust changes and routes are lost, and an exchange's
feedback rows beyond its primary one (``exchange.feedback_id``) stay as rows nothing points to, which the
older schema never reads.

Revision ID: tutor_trust_0010
Revises: n_students_0009
Create Date: 2026-12-10 09:00:00+00:00
"""

from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = 'tutor_trust_0010'
down_revision: str | Sequence[str] | None = 'n_students_0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON_T = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
TS = sa.DateTime(timezone=True)
TRUST_INDEX = 'ix_break_sample_run_id_trust'


def upgrade() -> None:
    op.create_table('trust_change',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('tutor', sa.String(length=100), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('step', sa.Integer(), nullable=False),
    sa.Column('round', sa.Integer(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('domain', sa.String(length=100), nullable=True),
    sa.Column('override_id', sa.Integer(), nullable=True),
    sa.Column('created_at', TS, nullable=False),
    sa.CheckConstraint("action IN ('quarantine', 'lift')", name=op.f('ck_trust_change_action')),
    sa.CheckConstraint("source IN ('auto', 'human')", name=op.f('ck_trust_change_source')),
    sa.ForeignKeyConstraint(['run_id'], ['run.id'], name=op.f('fk_trust_change_run_id_run'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_trust_change'))
    )
    op.create_index('ix_trust_change_run_id_id', 'trust_change', ['run_id', 'id'])
    op.add_column('feedback', sa.Column('shadow', sa.Boolean(), nullable=False, server_default=sa.false()))
    op.add_column('exchange', sa.Column('tutors', JSON_T, nullable=True))
    op.add_column('exchange', sa.Column('quarantined', JSON_T, nullable=True))
    op.add_column('exchange', sa.Column('route_reason', sa.Text(), nullable=True))
    op.add_column('break_sample', sa.Column('domain', sa.String(length=100), nullable=True))
    op.add_column('break_sample', sa.Column('shadow', sa.Boolean(), nullable=False, server_default=sa.false()))
    op.execute("UPDATE break_sample SET domain = (SELECT exchange.domain FROM exchange WHERE "
               "exchange.run_id = break_sample.run_id AND exchange.key = break_sample.exchange_key)")
    op.create_index(TRUST_INDEX, 'break_sample',
                    ['run_id', 'tutor', 'domain', 'global_step', 'round', 'correct_without_f', 'broken', 'shadow'])


def downgrade() -> None:
    op.drop_index(TRUST_INDEX, table_name='break_sample')
    op.drop_column('break_sample', 'shadow')
    op.drop_column('break_sample', 'domain')
    op.drop_column('exchange', 'route_reason')
    op.drop_column('exchange', 'quarantined')
    op.drop_column('exchange', 'tutors')
    op.drop_column('feedback', 'shadow')
    op.drop_index('ix_trust_change_run_id_id', table_name='trust_change')
    op.drop_table('trust_change')
