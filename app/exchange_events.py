"""A stored exchange as the trainer's exchange event (``opcod_core.events.ExchangeEvent``).

Why one function: an exchange a person edits, approves or replays goes back to the trainer as the event
it was recorded from, and the export writes the same schema as ``events.jsonl``, so one parser reads a
headless run's log and a served run's export. The rows keep every field of the event except the key of
an edited exchange's origin (the row links it by id instead: ``origin_exchange_id``).

N peers: the route (``tutors``, ``quarantined``, ``route_reason``) is on the exchange row and every tutor's
feedback record is a feedback row of its rollout (``app.models.exchanges``), the primary one first. The
primary row keeps the f the teacher saw (``used_text``: with several tutors, their used feedback joined by
newlines in route order, the primary tutor's first: ``opcod_core.step_routing``), so that tutor's own part
is what remains of it once the other routed tutors' parts are taken off its end (``own_part``).
"""

from __future__ import annotations

from typing import Any

from app.models import Exchange, Feedback
from opcod_core.events import ExchangeEvent


def exchange_event(x: Exchange) -> ExchangeEvent:
    """The event of exchange row ``x`` (reads its step, rollout, prompt and feedback rows)."""
    r, fb = x.rollout, x.feedback
    p = r.prompt
    return ExchangeEvent(
        key=x.key, round=x.round, direction=x.direction, step=x.step_row.step, global_step=x.global_step,
        tutee=x.tutee, tutor=x.tutor, domain=x.domain, prompt_id=p.item_key, question=p.question,
        choices=list(p.choices or []), labels=list(p.labels or []), gold=p.gold, prompt_index=r.prompt_index,
        rollout_index=r.rollout_index, rollout_text=r.text, token_ids=list(r.token_ids),
        finish_reason=x.finish_reason, answer=r.answer, correct=bool(r.correct), s_index=x.s_index, s_text=x.s_text,
        feedback_raw=fb.raw if fb else None, concept=fb.concept if fb else None, category=x.category,
        feedback_sanitised=fb.sanitised if fb else None, redactions=list(fb.redactions or []) if fb else [],
        feedback_used=fb.used_text if fb else None, feedback_source=fb.source if fb else None,
        approval=fb.approval if fb else None, context_used=x.context_used, skipped=x.skipped,
        teacher_context=x.teacher_context, tokens=x.tokens, divergence=x.divergence,
        divergence_s_only=x.divergence_s_only, student_logprob=x.student_logprob, loss=x.loss,
        override_id=str(x.override_id) if x.override_id is not None else None, **peer_fields(x))


def peer_fields(x: Exchange) -> dict[str, Any]:
    """The exchange's N-peer fields as the trainer reported them; none when it had none (``tutors`` NULL)."""
    if x.tutors is None:
        return {}
    rows = ordered_feedback(x)
    others = [f.used_text for f in rows if f.id != x.feedback_id and not f.shadow and f.used_text]
    records = [feedback_record(f, own_part(f.used_text, others) if f.id == x.feedback_id else f.used_text)
               for f in rows]
    return {"tutors": list(x.tutors), "quarantined": list(x.quarantined or []), "route_reason": x.route_reason,
            "feedbacks": records}


def ordered_feedback(x: Exchange) -> list[Feedback]:
    """Every feedback row of the exchange: the primary one first, then the other tutors' in stored order."""
    rows = list(x.rollout.feedbacks)
    return sorted(rows, key=lambda f: f.id != x.feedback_id)


def feedback_record(f: Feedback, used: str | None) -> dict[str, Any]:
    """A feedback row as one record of ``ExchangeEvent.feedbacks`` (``opcod_core.step.peer_fields``)."""
    return {"tutor": f.tutor, "quarantined": bool(f.shadow), "raw": f.raw, "concept": f.concept,
            "category": f.category, "sanitised": f.sanitised, "redactions": list(f.redactions or []), "used": used,
            "source": f.source, "approval": f.approval}


def own_part(joined: str | None, others: list[str]) -> str | None:
    """The primary tutor's part of the joined f (module docstring): all of it when no other tutor's feedback
    was used (or a person's edit replaced the whole), None when it is exactly the others' parts."""
    if joined is None or not others:
        return joined
    tail = "\n".join(others)
    if joined == tail:
        return None
    return joined[: -len(tail) - 1] if joined.endswith("\n" + tail) else joined
