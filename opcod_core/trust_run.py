"""Tutor trust in a running trainer: the evidence, the automatic quarantine, the people's overrides and the
events, around the pure ``opcod_core.trust.TrustState`` (whose docstring has the Wilson interval and the
quarantine rule).

Rules of a run:

* Settings: ``config.trust`` (``auto_quarantine`` off by default, ``threshold`` 0.5, ``z`` 1.96, ``recent``
  off: the recent window of ``TrustState``).
  Counts and intervals are tracked whatever the settings; only quarantines need ``auto_quarantine``
  or a person.
* Evidence: after every step, the step's break probes (``opcod_core.breakrate``: each attributed to the
  tutor whose feedback was probed, on the domain of the tutee's question; probes of a quarantined
  tutor's shadow feedback included) are added with ``TrustState.observe_samples``. The automatic rule
  is applied then; a change holds from the next step (its ``step`` is global step g + 1) and is
  reported as a ``trust`` event after the step's ``step`` event.
* People: run-level overrides ``quarantine`` and ``lift`` (``student`` = the tutor, ``value`` = an
  optional reason), polled between steps like force/mute (``opcod_core.apply_controls``): each is
  reported as an ``override`` event (the audit log) and, when it changed something, a ``trust`` event
  with ``source: human`` and the override's id. A human quarantine holds until a person lifts it; a
  human lift starts a fresh evidence window (``TrustState.lift``).
* Routing reads ``TrustState.quarantined()`` at the start of each step (``opcod_core.step_routing``).
* Exact resume: the state is part of the checkpoint (``to_dict``); a resumed run re-applies the
  config's settings (a fork may change them), reporting any change as ``trust`` events.
"""

from __future__ import annotations

from typing import Iterable

from opcod_core.events import BreakEvent, TrustEvent
from opcod_core.trust import TrustChange, TrustState

TRUST_OVERRIDES = ("quarantine", "lift")


def initial_trust(config) -> TrustState:
    t = config.trust
    return TrustState(threshold=t.threshold, z=t.z, auto_quarantine=t.auto_quarantine, recent=t.recent)


def trust_event(change: TrustChange, round: int, override_id: str | None = None) -> TrustEvent:
    return TrustEvent(tutor=change.tutor, action=change.action, source=change.source, step=change.step,
                      round=round, reason=change.reason, domain=change.domain, override_id=override_id)


def observe_step(trainer, breaks: Iterable[BreakEvent], round: int, global_step: int) -> None:
    """Adds a step's probes to the trainer's trust and emits the changes (module docstring)."""
    trainer.trust, changes = trainer.trust.observe_samples([b.to_dict() for b in breaks], step=global_step + 1)
    for change in changes:
        trainer.emit(trust_event(change, round))


def apply_trust_override(trainer, ov, round: int, global_step: int) -> None:
    """A person's ``quarantine`` or ``lift`` of tutor ``ov.student``, before step ``global_step``."""
    if ov.student not in trainer.names:
        raise ValueError(f"student: {ov.student!r} is not a peer of this run; expected one of {trainer.names}")
    reason = str(ov.value) if ov.value else ""
    act = trainer.trust.quarantine if ov.kind == "quarantine" else trainer.trust.lift
    trainer.trust, change = act(ov.student, global_step, reason)
    if change is not None:
        trainer.emit(trust_event(change, round, override_id=ov.id))


def restore_trust(trainer, state: dict | None, round: int, global_step: int) -> None:
    """The checkpointed trust under the config's settings (module docstring, "Exact resume")."""
    if state is None:
        trainer.trust = initial_trust(trainer.config)
        return
    t = trainer.config.trust
    trainer.trust, changes = TrustState.from_dict(state).reconfigure(
        global_step, threshold=t.threshold, z=t.z, auto_quarantine=t.auto_quarantine, recent=t.recent)
    for change in changes:
        trainer.emit(trust_event(change, round))


def trust_summary(trust: TrustState) -> dict:
    """The final break counts per (tutor, domain) with their Wilson intervals, and the quarantines in force."""
    return {"rows": [row.__dict__ for row in trust.rows()],
            "quarantined": {t: c.to_dict() for t, c in sorted(trust.quarantines.items())}}
