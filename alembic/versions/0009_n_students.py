"""A run holds 2 to 8 students (issue 17: co-distillation among N specialists).

``student.position`` was checked to be 0 or 1; it may now be 0 to 7 (``opcod_core.routing.MAX_PEERS``
students). Every other table names students by name (exchanges, gates, evaluations, break probes), so
nothing else changes. On SQLite the ``student`` table is rebuilt (batch mode); no table references it.

Downgrade refuses while any run has more than two students (its students would not fit the old check);
delete those runs first.

Revision ID: n_students_0009
Revises: flows_0008
Create Date: 2026-12-02 12:30:00+00:00
"""

from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = 'n_students_0009'
down_revision: str | Sequence[str] | None = 'flows_0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _check(condition: str) -> None:
    with op.batch_alter_table('student') as batch:
        batch.drop_constraint(op.f('ck_student_position'), type_='check')
        batch.create_check_constraint('position', condition)


def upgrade() -> None:
    _check('position BETWEEN 0 AND 7')


def downgrade() -> None:
    wide = op.get_bind().execute(sa.text("SELECT DISTINCT run_id FROM student WHERE position > 1")).scalars().all()
    if wide:
        raise RuntimeError(f"cannot downgrade below n_students_0009: runs {sorted(wide)[:10]} have more than two "
                           "students; delete them first")
    _check('position IN (0, 1)')
