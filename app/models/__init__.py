"""The ORM: every table the server and the workers share (DESIGN section 4; the migrations build them).

Why it looks like this:
- The trainer reports everything as events (``opcod_core.trainer``: run_start, gate, exchange, step,
  eval, break, checkpoint, override, replay, finish, resume). Columns mirror those events' fields so a
  worker stores exactly what the trainer reported and the dashboard shows exactly what was stored.
- An exchange event is split into its natural parts: ``prompt`` (the dataset item, once per run),
  ``rollout`` (the tutee's sample), ``feedback`` (what the tutor wrote and what became of it) and
  ``exchange`` (the tutoring unit: chosen sibling s, rendered teacher context, per-token arrays, loss).
- List views page newest-first by keyset (``WHERE run_id = ? [AND filter = ?] AND id < cursor ORDER
  BY id DESC``), never OFFSET; every such index ends with ``id`` so it serves both filter and order.
- Every foreign key inside a run cascades on delete and is indexed (PostgreSQL checks referencing rows
  on delete; an unindexed key turns deleting a run into a scan per row).
- High-volume tables use 64-bit ids (``BigId``); ``event.id`` is the SSE ``Last-Event-ID`` and is
  AUTOINCREMENT on SQLite so an id is never reused.
- Constraint names follow ``NAMING_CONVENTION`` so migrations (and batch mode on SQLite) are stable.
- A run's event ids follow commit order: every transaction that writes events locks the run row first
  (``lock_run``, or the worker's fence).
- Status columns carry CHECK constraints for the values listed in the ``*_STATUSES`` tuples below.
- N peers (issue 17): an exchange keeps every tutor's feedback (one ``feedback`` row per tutor that wrote,
  sharing the rollout; the quarantined ones marked ``shadow``) and its route, and ``trust_change`` keeps each
  quarantine and lift of a tutor (``trust`` events).
"""

from app.models.base import (APPROVAL_STATUSES, FEEDBACK_SOURCES, GATE_DECISIONS, NAMING_CONVENTION,  # noqa: F401
                             OVERRIDE_STATUSES, REPLAY_STATUSES, RUN_ACTIONS, RUN_STATUSES, SOURCES, TRUST_ACTIONS,
                             Base)
from app.models.controls import Approval, Override, Replay  # noqa: F401
from app.models.exchanges import BreakSample, Exchange, Feedback, Prompt, Rollout  # noqa: F401
from app.models.trust import TrustChange  # noqa: F401
from app.models.runs import (Checkpoint, EvalResult, Event, GateRecord, Metric, Run, Step, Student,  # noqa: F401
                             Worker, lock_run)
