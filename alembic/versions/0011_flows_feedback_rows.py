"""Indexes of the tutoring-flow matrix's second read: every tutor's feedback rows (issue 17, N peers).

Since migration 0010 a rollout keeps one feedback row per tutor that wrote (routing mode ``all``; quarantined
tutors writing in the shadow, ``feedback.shadow``), and the flow matrix (``app.services.flows``) counts each
row under its own tutor. The exchange counts still come from ``ix_exchange_run_id_flows`` alone; the rows
beside an exchange's primary one, and the primary rows marked shadow, come from a second ``GROUP BY`` that
joins ``feedback`` to the run's exchanges through ``rollout_id``. Without these indexes that join visits
every exchange row of the run and every feedback row of it: measured on SQLite at 100,000 exchanges of a
two-student run (``benchmarks/store/synth.py``'s rows, on a busy 2-core machine, best of 5 in three
sessions), 164 to 207 ms, beside 22 to 35 ms for the exchange counts; with them, 37 to 58 ms:

* ``ix_exchange_run_id_flows`` gains ``rollout_id`` and ``feedback_id`` at its end: the join reads the
  exchange side from the index alone, and the exchange counts, which read its first columns in order,
  do not change.
* ``ix_feedback_rollout_id`` becomes ``ix_feedback_rollout_id_shadow`` (``rollout_id, shadow``): the join
  tells a primary row that is not shadow from the index entry (on SQLite it carries the row id, compared
  with ``exchange.feedback_id``), and visits only the rows it counts. Lookups by ``rollout_id`` (an
  exchange's feedback rows) use its first column as before.

Downgrade restores both indexes as 0008 and 0001 made them; no row changes either way.

Revision ID: flows_feedback_0011
Revises: tutor_trust_0010
Create Date: 2026-12-11 09:00:00+00:00
"""

from __future__ import annotations

from typing import Sequence

from alembic import op

revision: str = 'flows_feedback_0011'
down_revision: str | Sequence[str] | None = 'tutor_trust_0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

FLOWS_INDEX = 'ix_exchange_run_id_flows'
FLOWS_COLUMNS = ['run_id', 'tutor', 'tutee', 'domain', 'round', 'category', 'human_edited']


def upgrade() -> None:
    op.drop_index(FLOWS_INDEX, table_name='exchange')
    op.create_index(FLOWS_INDEX, 'exchange', [*FLOWS_COLUMNS, 'rollout_id', 'feedback_id'])
    op.drop_index('ix_feedback_rollout_id', table_name='feedback')
    op.create_index('ix_feedback_rollout_id_shadow', 'feedback', ['rollout_id', 'shadow'])


def downgrade() -> None:
    op.drop_index('ix_feedback_rollout_id_shadow', table_name='feedback')
    op.create_index('ix_feedback_rollout_id', 'feedback', ['rollout_id'])
    op.drop_index(FLOWS_INDEX, table_name='exchange')
    op.create_index(FLOWS_INDEX, 'exchange', FLOWS_COLUMNS)
