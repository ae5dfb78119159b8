"""How the trainer takes input while it runs: a small controls interface polled between steps.

The web worker implements it on top of the database (pause/cancel requests, overrides, approvals,
replays written by the dashboard or the REST API); ``NullControls`` makes the core runnable alone.
Nothing here blocks training: the trainer polls at step boundaries, applies what it got at the
next step, and reports each application back through the observer (``override`` events with the
step at which it took effect) so it can be audited.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from opcod_core.events import ExchangeEvent

RunOverrideKind = Literal["force_tutor", "mute_tutor", "clear_tutor", "set_tau", "set_mode", "quarantine", "lift"]
ExchangeOverrideKind = Literal["edit", "reject", "approve"]


@dataclass(frozen=True)
class RunOverride:
    """Run-level: force or mute a student as tutor (``student``), clear that, change tau or gating mode, or
    quarantine or lift a tutor (``student``; ``value``: an optional reason, ``opcod_core.trust_run``)."""

    id: str
    kind: RunOverrideKind
    student: str | None = None
    value: Any = None
    author: str = "human"


@dataclass(frozen=True)
class ExchangeOverride:
    """Exchange-level: edit, reject or approve a feedback. ``exchange`` is the stored exchange event
    (what ``on_event`` reported), so the trainer can rebuild the training example from it."""

    id: str
    kind: ExchangeOverrideKind
    exchange: ExchangeEvent
    text: str | None = None
    author: str = "human"


@dataclass(frozen=True)
class ReplayRequest:
    """Recompute an exchange with edited feedback and/or another tutor checkpoint's feedback."""

    id: str
    exchange: ExchangeEvent
    feedback: str | None = None
    tutor_checkpoint: str | None = None


@dataclass
class ControlBatch:
    action: Literal["continue", "pause", "cancel"] = "continue"
    run_overrides: list[RunOverride] = field(default_factory=list)
    exchange_overrides: list[ExchangeOverride] = field(default_factory=list)
    replays: list[ReplayRequest] = field(default_factory=list)


@dataclass(frozen=True)
class ApprovalRequest:
    """Kept feedback waiting for a human in manual approval mode."""

    exchange_id: str
    exchange: ExchangeEvent


Decision = tuple[Literal["approve", "reject", "edit"], str | None]


class Controls(Protocol):
    def poll(self, position: dict) -> ControlBatch:
        """Called between steps with the position (round, direction, step, global_step)."""
        ...

    def decide(self, pending: list[ApprovalRequest], timeout_s: float,
               default: Literal["approve", "reject"]) -> dict[str, Decision]:
        """Manual approval: decisions per exchange id; missing ids get ``default``."""
        ...


class NullControls:
    """No human in the loop: never pauses; manual approvals take the default immediately."""

    def poll(self, position: dict) -> ControlBatch:
        return ControlBatch()

    def decide(self, pending, timeout_s, default):
        return {p.exchange_id: (default, None) for p in pending}


class ScriptedControls:
    """Controls fed from a list (tests, notebooks): ``script[global_step] -> ControlBatch``;
    approvals decided by ``approver(request) -> Decision`` when given."""

    def __init__(self, script: dict[int, ControlBatch] | None = None, approver=None) -> None:
        self.script = dict(script or {})
        self.approver = approver
        self.asked: list[ApprovalRequest] = []

    def poll(self, position: dict) -> ControlBatch:
        return self.script.pop(position["global_step"], ControlBatch())

    def decide(self, pending, timeout_s, default):
        self.asked.extend(pending)
        if self.approver is None:
            return {p.exchange_id: (default, None) for p in pending}
        return {p.exchange_id: self.approver(p) for p in pending}
