"""Initial schema: every table of app.models (DESIGN section 4).

Written without importing app code, so this revision keeps building the same schema whatever the
models later become. Per-token arrays are packed bytes (app.types.FloatArray/IntArray), timestamps
are timezone-aware, JSON is JSONB on PostgreSQL, and high-volume ids are 64-bit except on SQLite
(where only INTEGER PRIMARY KEY aliases the rowid).

Revision ID: 0001
Revises:
Create Date: 2026-11-25 11:19:38.554115+00:00
"""

from __future__ import annotations

from typing import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = '0001'
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON_T = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table('worker',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('hostname', sa.String(length=255), nullable=False),
    sa.Column('pid', sa.Integer(), nullable=False),
    sa.Column('started_at', TS, nullable=False),
    sa.Column('heartbeat_at', TS, nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_worker'))
    )
    op.create_table('run',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('preset', sa.String(length=64), nullable=True),
    sa.Column('config', JSON_T, nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('requested_action', sa.String(length=16), nullable=True),
    sa.Column('created_at', TS, nullable=False),
    sa.Column('started_at', TS, nullable=True),
    sa.Column('finished_at', TS, nullable=True),
    sa.Column('updated_at', TS, nullable=False),
    sa.Column('worker_id', sa.Integer(), nullable=True),
    sa.Column('heartbeat_at', TS, nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('out_dir', sa.String(length=1024), nullable=True),
    sa.Column('next_task', sa.Integer(), nullable=False),
    sa.Column('total_tasks', sa.Integer(), nullable=True),
    sa.Column('progress', JSON_T, nullable=True),
    sa.Column('summary', JSON_T, nullable=True),
    sa.Column('parent_run_id', sa.Integer(), nullable=True),
    sa.Column('fork_checkpoint', sa.String(length=1024), nullable=True),
    sa.CheckConstraint("requested_action IN ('pause', 'cancel') OR requested_action IS NULL", name=op.f('ck_run_requested_action')),
    sa.CheckConstraint("status IN ('queued', 'running', 'paused', 'finished', 'failed', 'cancelled')", name=op.f('ck_run_status')),
    sa.ForeignKeyConstraint(['parent_run_id'], ['run.id'], name=op.f('fk_run_parent_run_id_run'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['worker_id'], ['worker.id'], name=op.f('fk_run_worker_id_worker'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_run'))
    )
    op.create_index('ix_run_parent_run_id', 'run', ['parent_run_id'])
    op.create_index('ix_run_status_id', 'run', ['status', 'id'])
    op.create_index('ix_run_worker_id', 'run', ['worker_id'])
    op.create_table('approval',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('exchange_key', sa.String(length=255), nullable=False),
    sa.Column('payload', JSON_T, nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('text', sa.Text(), nullable=True),
    sa.Column('decided_by', sa.String(length=200), nullable=True),
    sa.Column('created_at', TS, nullable=False),
    sa.Column('decided_at', TS, nullable=True),
    sa.Column('deadline', TS, nullable=True),
    sa.CheckConstraint("status IN ('pending', 'approved', 'rejected', 'edited', 'timed_out')", name=op.f('ck_approval_status')),
    sa.ForeignKeyConstraint(['run_id'], ['run.id'], name=op.f('fk_approval_run_id_run'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_approval')),
    sa.UniqueConstraint('run_id', 'exchange_key', name=op.f('uq_approval_run_id_exchange_key'))
    )
    op.create_index('ix_approval_run_id_status_id', 'approval', ['run_id', 'status', 'id'])
    op.create_table('break_sample',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('exchange_key', sa.String(length=255), nullable=False),
    sa.Column('round', sa.Integer(), nullable=False),
    sa.Column('direction', sa.SmallInteger(), nullable=False),
    sa.Column('global_step', sa.Integer(), nullable=False),
    sa.Column('tutee', sa.String(length=100), nullable=False),
    sa.Column('tutor', sa.String(length=100), nullable=False),
    sa.Column('tutor_cognizant', sa.Boolean(), nullable=False),
    sa.Column('difficulty', sa.String(length=32), nullable=False),
    sa.Column('correct_with_sf', sa.Boolean(), nullable=False),
    sa.Column('correct_with_s', sa.Boolean(), nullable=False),
    sa.Column('broken', sa.Boolean(), nullable=False),
    sa.Column('created_at', TS, nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['run.id'], name=op.f('fk_break_sample_run_id_run'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_break_sample'))
    )
    op.create_index('ix_break_sample_run_id_id', 'break_sample', ['run_id', 'id'])
    op.create_table('checkpoint',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('tag', sa.String(length=64), nullable=False),
    sa.Column('path', sa.String(length=1024), nullable=False),
    sa.Column('next_task', sa.Integer(), nullable=False),
    sa.Column('round', sa.Integer(), nullable=True),
    sa.Column('events_before', sa.Integer(), nullable=True),
    sa.Column('permanent', sa.Boolean(), nullable=False),
    sa.Column('created_at', TS, nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['run.id'], name=op.f('fk_checkpoint_run_id_run'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_checkpoint'))
    )
    op.create_index('ix_checkpoint_run_id_id', 'checkpoint', ['run_id', 'id'])
    op.create_table('eval_result',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('round', sa.Integer(), nullable=False),
    sa.Column('student', sa.String(length=100), nullable=False),
    sa.Column('domain', sa.String(length=100), nullable=False),
    sa.Column('split', sa.String(length=16), nullable=False),
    sa.Column('k', sa.Integer(), nullable=False),
    sa.Column('accuracy', sa.Float(), nullable=False),
    sa.Column('n_items', sa.Integer(), nullable=False),
    sa.Column('created_at', TS, nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['run.id'], name=op.f('fk_eval_result_run_id_run'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_eval_result')),
    sa.UniqueConstraint('run_id', 'split', 'round', 'student', 'domain', name=op.f('uq_eval_result_run_id_split_round_student_domain'))
    )
    op.create_table('event',
    sa.Column('id', BIG_ID, autoincrement=True, nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('type', sa.String(length=32), nullable=False),
    sa.Column('ref_id', BIG_ID, nullable=True),
    sa.Column('payload', JSON_T, nullable=False),
    sa.Column('created_at', TS, nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['run.id'], name=op.f('fk_event_run_id_run'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_event')),
    sqlite_autoincrement=True
    )
    op.create_index('ix_event_run_id_id', 'event', ['run_id', 'id'])
    op.create_table('gate_record',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('round', sa.Integer(), nullable=False),
    sa.Column('student', sa.String(length=100), nullable=False),
    sa.Column('scores', JSON_T, nullable=False),
    sa.Column('best', JSON_T, nullable=False),
    sa.Column('delta', sa.Float(), nullable=False),
    sa.Column('tau', sa.Float(), nullable=False),
    sa.Column('mode', sa.String(length=32), nullable=False),
    sa.Column('decision', sa.String(length=16), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('allowed_domains', JSON_T, nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('split', sa.String(length=16), nullable=True),
    sa.Column('k', sa.Integer(), nullable=True),
    sa.Column('note', sa.String(length=64), nullable=True),
    sa.Column('created_at', TS, nullable=False),
    sa.CheckConstraint("decision IN ('tutor', 'silent')", name=op.f('ck_gate_record_decision')),
    sa.CheckConstraint("source IN ('auto', 'human')", name=op.f('ck_gate_record_source')),
    sa.ForeignKeyConstraint(['run_id'], ['run.id'], name=op.f('fk_gate_record_run_id_run'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_gate_record'))
    )
    op.create_index('ix_gate_record_run_id_round_id', 'gate_record', ['run_id', 'round', 'id'])
    op.create_table('metric',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('global_step', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=128), nullable=False),
    sa.Column('value', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['run.id'], name=op.f('fk_metric_run_id_run'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_metric'))
    )
    op.create_index('ix_metric_run_id_key_global_step', 'metric', ['run_id', 'key', 'global_step'])
    op.create_table('prompt',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('item_key', sa.String(length=255), nullable=False),
    sa.Column('domain', sa.String(length=100), nullable=False),
    sa.Column('split', sa.String(length=16), nullable=True),
    sa.Column('answer_type', sa.String(length=16), nullable=False),
    sa.Column('question', sa.Text(), nullable=False),
    sa.Column('choices', JSON_T, nullable=False),
    sa.Column('labels', JSON_T, nullable=False),
    sa.Column('gold', sa.Text(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['run.id'], name=op.f('fk_prompt_run_id_run'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_prompt')),
    sa.UniqueConstraint('run_id', 'item_key', name=op.f('uq_prompt_run_id_item_key'))
    )
    op.create_table('step',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('round', sa.Integer(), nullable=False),
    sa.Column('direction', sa.SmallInteger(), nullable=False),
    sa.Column('step', sa.Integer(), nullable=False),
    sa.Column('global_step', sa.Integer(), nullable=False),
    sa.Column('tutee', sa.String(length=100), nullable=False),
    sa.Column('tutor', sa.String(length=100), nullable=False),
    sa.Column('loss', sa.Float(), nullable=True),
    sa.Column('metrics', JSON_T, nullable=False),
    sa.Column('created_at', TS, nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['run.id'], name=op.f('fk_step_run_id_run'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_step')),
    sa.UniqueConstraint('run_id', 'global_step', name=op.f('uq_step_run_id_global_step'))
    )
    op.create_table('student',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.SmallInteger(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('model_ref', sa.String(length=500), nullable=False),
    sa.Column('strong_domain', sa.String(length=100), nullable=True),
    sa.Column('tokenizer', sa.String(length=500), nullable=True),
    sa.CheckConstraint('position IN (0, 1)', name=op.f('ck_student_position')),
    sa.ForeignKeyConstraint(['run_id'], ['run.id'], name=op.f('fk_student_run_id_run'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_student')),
    sa.UniqueConstraint('run_id', 'name', name=op.f('uq_student_run_id_name')),
    sa.UniqueConstraint('run_id', 'position', name=op.f('uq_student_run_id_position'))
    )
    op.create_table('rollout',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('step_id', sa.Integer(), nullable=False),
    sa.Column('student', sa.String(length=100), nullable=False),
    sa.Column('prompt_id', sa.Integer(), nullable=False),
    sa.Column('prompt_index', sa.Integer(), nullable=True),
    sa.Column('rollout_index', sa.Integer(), nullable=True),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('token_ids', sa.LargeBinary(), nullable=False),
    sa.Column('answer', sa.Text(), nullable=True),
    sa.Column('correct', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['prompt_id'], ['prompt.id'], name=op.f('fk_rollout_prompt_id_prompt'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['run_id'], ['run.id'], name=op.f('fk_rollout_run_id_run'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['step_id'], ['step.id'], name=op.f('fk_rollout_step_id_step'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_rollout'))
    )
    op.create_index('ix_rollout_prompt_id', 'rollout', ['prompt_id'])
    op.create_index('ix_rollout_run_id_step_id', 'rollout', ['run_id', 'step_id'])
    op.create_index('ix_rollout_step_id', 'rollout', ['step_id'])
    op.create_table('feedback',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('rollout_id', BIG_ID, nullable=False),
    sa.Column('tutor', sa.String(length=100), nullable=False),
    sa.Column('raw', sa.Text(), nullable=True),
    sa.Column('concept', sa.Text(), nullable=True),
    sa.Column('category', sa.String(length=32), nullable=True),
    sa.Column('sanitised', sa.Text(), nullable=True),
    sa.Column('redactions', JSON_T, nullable=False),
    sa.Column('used_text', sa.Text(), nullable=True),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('approval', sa.String(length=16), nullable=True),
    sa.CheckConstraint("source IN ('model', 'human')", name=op.f('ck_feedback_source')),
    sa.ForeignKeyConstraint(['rollout_id'], ['rollout.id'], name=op.f('fk_feedback_rollout_id_rollout'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_feedback'))
    )
    op.create_index('ix_feedback_rollout_id', 'feedback', ['rollout_id'])
    op.create_table('exchange',
    sa.Column('id', BIG_ID, nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('step_id', sa.Integer(), nullable=False),
    sa.Column('rollout_id', BIG_ID, nullable=False),
    sa.Column('feedback_id', BIG_ID, nullable=True),
    sa.Column('round', sa.Integer(), nullable=False),
    sa.Column('direction', sa.SmallInteger(), nullable=False),
    sa.Column('global_step', sa.Integer(), nullable=False),
    sa.Column('tutee', sa.String(length=100), nullable=False),
    sa.Column('tutor', sa.String(length=100), nullable=False),
    sa.Column('domain', sa.String(length=100), nullable=False),
    sa.Column('correct', sa.Boolean(), nullable=False),
    sa.Column('category', sa.String(length=32), nullable=True),
    sa.Column('human_edited', sa.Boolean(), nullable=False),
    sa.Column('origin_exchange_id', BIG_ID, nullable=True),
    sa.Column('override_id', sa.Integer(), nullable=True),
    sa.Column('s_index', sa.Integer(), nullable=True),
    sa.Column('s_text', sa.Text(), nullable=True),
    sa.Column('context_used', sa.String(length=8), nullable=False),
    sa.Column('skipped', sa.Boolean(), nullable=False),
    sa.Column('teacher_context', sa.Text(), nullable=True),
    sa.Column('tokens', JSON_T, nullable=True),
    sa.Column('student_logprob', sa.LargeBinary(), nullable=True),
    sa.Column('divergence', sa.LargeBinary(), nullable=True),
    sa.Column('divergence_s_only', sa.LargeBinary(), nullable=True),
    sa.Column('loss', sa.Float(), nullable=True),
    sa.Column('created_at', TS, nullable=False),
    sa.ForeignKeyConstraint(['feedback_id'], ['feedback.id'], name=op.f('fk_exchange_feedback_id_feedback'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['origin_exchange_id'], ['exchange.id'], name=op.f('fk_exchange_origin_exchange_id_exchange'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['rollout_id'], ['rollout.id'], name=op.f('fk_exchange_rollout_id_rollout'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['run_id'], ['run.id'], name=op.f('fk_exchange_run_id_run'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['step_id'], ['step.id'], name=op.f('fk_exchange_step_id_step'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_exchange')),
    sa.UniqueConstraint('run_id', 'key', name=op.f('uq_exchange_run_id_key'))
    )
    op.create_index('ix_exchange_feedback_id', 'exchange', ['feedback_id'])
    op.create_index('ix_exchange_origin_exchange_id', 'exchange', ['origin_exchange_id'])
    op.create_index('ix_exchange_override_id', 'exchange', ['override_id'])
    op.create_index('ix_exchange_rollout_id', 'exchange', ['rollout_id'])
    op.create_index('ix_exchange_run_id_category_id', 'exchange', ['run_id', 'category', 'id'])
    op.create_index('ix_exchange_run_id_correct_id', 'exchange', ['run_id', 'correct', 'id'])
    op.create_index('ix_exchange_run_id_direction_id', 'exchange', ['run_id', 'direction', 'id'])
    op.create_index('ix_exchange_run_id_domain_id', 'exchange', ['run_id', 'domain', 'id'])
    op.create_index('ix_exchange_run_id_human_edited_id', 'exchange', ['run_id', 'human_edited', 'id'])
    op.create_index('ix_exchange_run_id_id', 'exchange', ['run_id', 'id'])
    op.create_index('ix_exchange_run_id_round_id', 'exchange', ['run_id', 'round', 'id'])
    op.create_index('ix_exchange_step_id', 'exchange', ['step_id'])
    op.create_table('override',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('exchange_id', BIG_ID, nullable=True),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('payload', JSON_T, nullable=False),
    sa.Column('author', sa.String(length=200), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', TS, nullable=False),
    sa.Column('applied_at', TS, nullable=True),
    sa.Column('applied_at_step', sa.Integer(), nullable=True),
    sa.CheckConstraint("status IN ('pending', 'applied', 'rejected')", name=op.f('ck_override_status')),
    sa.ForeignKeyConstraint(['exchange_id'], ['exchange.id'], name=op.f('fk_override_exchange_id_exchange'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['run_id'], ['run.id'], name=op.f('fk_override_run_id_run'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_override'))
    )
    op.create_index('ix_override_exchange_id', 'override', ['exchange_id'])
    op.create_index('ix_override_run_id_status_id', 'override', ['run_id', 'status', 'id'])
    op.create_table('replay',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('run_id', sa.Integer(), nullable=False),
    sa.Column('exchange_id', BIG_ID, nullable=False),
    sa.Column('inputs', JSON_T, nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('result', JSON_T, nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('worker_id', sa.Integer(), nullable=True),
    sa.Column('created_at', TS, nullable=False),
    sa.Column('started_at', TS, nullable=True),
    sa.Column('finished_at', TS, nullable=True),
    sa.CheckConstraint("status IN ('queued', 'running', 'done', 'failed')", name=op.f('ck_replay_status')),
    sa.ForeignKeyConstraint(['exchange_id'], ['exchange.id'], name=op.f('fk_replay_exchange_id_exchange'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['run_id'], ['run.id'], name=op.f('fk_replay_run_id_run'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['worker_id'], ['worker.id'], name=op.f('fk_replay_worker_id_worker'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_replay'))
    )
    op.create_index('ix_replay_exchange_id', 'replay', ['exchange_id'])
    op.create_index('ix_replay_run_id_status_id', 'replay', ['run_id', 'status', 'id'])
    op.create_index('ix_replay_status_id', 'replay', ['status', 'id'])
    op.create_index('ix_replay_worker_id', 'replay', ['worker_id'])


def downgrade() -> None:
    # dropping a table drops its indexes and constraints
    op.drop_table('replay')
    op.drop_table('override')
    op.drop_table('exchange')
    op.drop_table('feedback')
    op.drop_table('rollout')
    op.drop_table('student')
    op.drop_table('step')
    op.drop_table('prompt')
    op.drop_table('metric')
    op.drop_table('gate_record')
    op.drop_table('event')
    op.drop_table('eval_result')
    op.drop_table('checkpoint')
    op.drop_table('break_sample')
    op.drop_table('approval')
    op.drop_table('run')
    op.drop_table('worker')
