"""What the trainer does with the requests it polls between steps (``opcod_core.controls``).

Run-level overrides change the gate's inputs (a forced or muted tutor, tau, the gating mode) and re-decide
the current round's gate at once (a ``gate`` event with note ``override``), or quarantine or lift a tutor
(``quarantine``/``lift``: ``opcod_core.trust_run``, a ``trust`` event; the gate is not re-decided for
them); an exchange-level ``edit``
queues the stored exchange, with the person's feedback, for its tutee's next step
(``opcod_core.human_feedback``); replays are measured right away (``opcod_core.replay``). Every applied
request is reported as an ``override`` or ``replay`` event naming the step it took effect at.
"""

from __future__ import annotations

from opcod_core import events as ev
from opcod_core.replay import replay_exchange
from opcod_core.trust_run import TRUST_OVERRIDES, apply_trust_override

_FORCED = {"force_tutor": "tutor", "mute_tutor": "silent"}


def apply_controls(trainer, r: int, slot: int, k: int) -> str:
    """Poll and apply the requests before step ``k`` of the ``slot``-th direction of round ``r``; returns
    the requested action (continue, pause or cancel)."""
    g = trainer.global_step(r, slot, k)
    batch = trainer.controls.poll({"round": r, "direction": trainer.direction_of(r, slot), "step": k,
                                   "global_step": g})
    for ov in batch.run_overrides:
        trainer.emit(ev.OverrideEvent(id=ov.id, kind=ov.kind, student=ov.student, value=ov.value,
                                      author=ov.author, applied_at_step=g, round=r))
        if ov.kind in TRUST_OVERRIDES:
            apply_trust_override(trainer, ov, r, g)
        elif ov.kind in _FORCED:
            trainer.forced[ov.student] = _FORCED[ov.kind]
        elif ov.kind == "clear_tutor":
            trainer.forced.pop(ov.student, None)
        elif ov.kind == "set_tau":
            trainer.tau = float(ov.value)
        elif ov.kind == "set_mode":
            trainer.mode = str(ov.value)
    if any(ov.kind not in TRUST_OVERRIDES for ov in batch.run_overrides) and trainer.round_scores:
        trainer._decide(r, source_note="override")
    for ov in batch.exchange_overrides:
        ex = ov.exchange
        if ov.kind == "edit" and ov.text:
            queued = ex.model_copy(update={"feedback_used": ov.text, "override_id": ov.id})
            trainer.pending_human.setdefault(ex.tutee, []).append(queued.to_dict())   # JSON: checkpointed
        trainer.emit(ev.OverrideEvent(id=ov.id, kind=ov.kind, exchange_key=ex.key, text=ov.text, author=ov.author,
                                      applied_at_step=g, round=r, tutee=ex.tutee))
    for rq in batch.replays:
        trainer.emit(replay_exchange(trainer, rq))
    return batch.action
