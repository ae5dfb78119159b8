"""The domain's words, each defined once: run and request statuses, override kinds, anchoring categories,
the Pareto rule and the number of tasks of a run.

Why one module: these words were written out in many places (final statuses three times in Python and
four times in templates, override kinds five times, the Pareto rule three times), and copies drift. The
web side, the worker, the database schema (its CHECK constraints are built from these enums) and the
core all import them from here. The module imports nothing but the standard library, so the web app
can use it without loading torch.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Mapping


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    FINISHED = "finished"
    FAILED = "failed"
    CANCELLED = "cancelled"


# A run in one of these states never changes again (no worker claims it, no control applies).
FINAL_RUN_STATUSES: frozenset[RunStatus] = frozenset({RunStatus.FINISHED, RunStatus.FAILED, RunStatus.CANCELLED})
# No worker is training the run: a replay may use the worker's time.
IDLE_RUN_STATUSES: frozenset[RunStatus] = FINAL_RUN_STATUSES | {RunStatus.PAUSED}


class RunAction(StrEnum):
    """What a person asks of a run (``run.requested_action``); resume is a transition, not a request."""

    PAUSE = "pause"
    CANCEL = "cancel"


class GateDecision(StrEnum):
    TUTOR = "tutor"
    SILENT = "silent"


class DecisionSource(StrEnum):
    AUTO = "auto"
    HUMAN = "human"


class FeedbackSource(StrEnum):
    MODEL = "model"
    HUMAN = "human"


class OverrideStatus(StrEnum):
    PENDING = "pending"
    APPLIED = "applied"
    REJECTED = "rejected"


class ApprovalStatus(StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    EDITED = "edited"
    TIMED_OUT = "timed_out"


class ReplayStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


class RunOverrideKind(StrEnum):
    """Run-level overrides of the gate, applied by the worker before the next step."""

    FORCE_TUTOR = "force_tutor"
    MUTE_TUTOR = "mute_tutor"
    CLEAR_TUTOR = "clear_tutor"
    SET_TAU = "set_tau"
    SET_MODE = "set_mode"
    QUARANTINE = "quarantine"
    LIFT = "lift"


# The run-level kinds that name a student (the tutor they force, mute, clear, quarantine or lift).
TUTOR_OVERRIDE_KINDS: frozenset[RunOverrideKind] = frozenset(
    {RunOverrideKind.FORCE_TUTOR, RunOverrideKind.MUTE_TUTOR, RunOverrideKind.CLEAR_TUTOR,
     RunOverrideKind.QUARANTINE, RunOverrideKind.LIFT})
# The tutor kinds whose ``value`` is an optional reason (``opcod_core.trust_run``): a quarantined tutor still
# writes its feedback, stored and probed, but the feedback is never used, until a person or the evidence lifts it.
TRUST_OVERRIDE_KINDS: frozenset[RunOverrideKind] = frozenset({RunOverrideKind.QUARANTINE, RunOverrideKind.LIFT})
RUN_OVERRIDE_LABELS: dict[RunOverrideKind, str] = {
    RunOverrideKind.FORCE_TUTOR: "force a tutor on", RunOverrideKind.MUTE_TUTOR: "mute a tutor",
    RunOverrideKind.CLEAR_TUTOR: "clear force/mute of a tutor", RunOverrideKind.SET_TAU: "set τ",
    RunOverrideKind.SET_MODE: "set the gating mode",
    RunOverrideKind.QUARANTINE: "quarantine a tutor (its feedback is written, never used)",
    RunOverrideKind.LIFT: "lift a tutor's quarantine"}
#: The longest reason a quarantine or lift may carry (it is shown on the run page and in the audit log).
MAX_REASON = 500


class TrustAction(StrEnum):
    """What a tutor-trust change did (``opcod_core.trust.TrustChange.action``)."""

    QUARANTINE = "quarantine"
    LIFT = "lift"


class ExchangeOverrideKind(StrEnum):
    """Overrides of one exchange's feedback: replace its text, drop it, or approve it as written."""

    EDIT = "edit"
    REJECT = "reject"
    APPROVE = "approve"


# Anchoring's verdicts on a tutor's feedback (opcod_core.anchoring): only "kept" feedback reaches the teacher.
ANCHORING_CATEGORIES: tuple[str, ...] = ("kept", "no_match", "no_concept_tag", "empty", "all_generic")


def values(enum: type[StrEnum]) -> tuple[str, ...]:
    """The enum's values in declaration order (for CHECK constraints, Literal types and form choices)."""
    return tuple(m.value for m in enum)


def pareto_improved(initial: Mapping[str, float], final: Mapping[str, float], tol: float = 0.0) -> bool:
    """The paper's Pareto rule for one student: no domain worse than at the start (beyond ``tol``) and
    at least one better (beyond ``tol``)."""
    return (all(final[d] >= initial[d] - tol for d in initial)
            and any(final[d] > initial[d] + tol for d in initial))


def task_count(rounds: int, steps_per_direction: int, peers: int = 2) -> int:
    """Tasks of a run: the initial evaluation, then per round a gate, ``peers`` x K steps (one direction per
    student as tutee) and an evaluation."""
    return 1 + rounds * (peers * steps_per_direction + 2)
