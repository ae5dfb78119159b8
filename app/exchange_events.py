"""A stored exchange as the trainer's exchange event (``opcod_core.events.ExchangeEvent``).

Why one function: an exchange a person edits, approves or replays goes back to the trainer as the event
it was recorded from, and the export writes the same schema as ``events.jsonl``, so one parser reads a
headless run's log and a served run's export. The rows keep every field of the event except the key of
an edited exchange's origin (the row links it by id instead: ``origin_exchange_id``).

N peers: the route (``tutors``, ``quarantined``, ``route_reason``) is on the exchange row and every tutor's
feedback record is a feedback row of its rollout (``app.models.exchanges``), the primary one first. Each
row keeps its own tutor's part of the f the teacher saw (``used_text``; None for shadow feedback and for a
part that was not used), and the f is rebuilt from them as the trainer built it: the used parts joined by
newlines in route order (``opcod_core.step_routing.tutor_feedback``; ``joined_used``). Nothing is stored
twice, so an exchange's f and its tutors' parts cannot disagree (before migration 0012 the primary row held
the joined f and its own part was derived from it).
"""

from __future__ import annotations

from typing import Any

from app.models import Exchange, Feedback
from opcod_core.events import ExchangeEvent


def exchange_event(x: Exchange) -> ExchangeEvent:
    """The event of exchange row ``x`` (reads its step, rollout, prompt and feedback rows; an N-peer
    exchange's rows are ordered once, for its f and its records)."""
    r, fb = x.rollout, x.feedback
    rows = ordered_feedback(x) if x.tutors is not None else None
    p = r.prompt
    return ExchangeEvent(
        key=x.key, round=x.round, direction=x.direction, step=x.step_row.step, global_step=x.global_step,
        tutee=x.tutee, tutor=x.tutor, domain=x.domain, prompt_id=p.item_key, question=p.question,
        choices=list(p.choices or []), labels=list(p.labels or []), gold=p.gold, prompt_index=r.prompt_index,
        rollout_index=r.rollout_index, rollout_text=r.text, token_ids=list(r.token_ids),
        finish_reason=x.finish_reason, answer=r.answer, correct=bool(r.correct), s_index=x.s_index, s_text=x.s_text,
        feedback_raw=fb.raw if fb else None, concept=fb.concept if fb else None, category=x.category,
        feedback_sanitised=fb.sanitised if fb else None, redactions=list(fb.redactions or []) if fb else [],
        feedback_used=feedback_used(x, rows), feedback_source=fb.source if fb else None,
        approval=fb.approval if fb else None, context_used=x.context_used, skipped=x.skipped,
        teacher_context=x.teacher_context, tokens=x.tokens, divergence=x.divergence,
        divergence_s_only=x.divergence_s_only, student_logprob=x.student_logprob, loss=x.loss,
        override_id=str(x.override_id) if x.override_id is not None else None, **peer_fields(x, rows))


def feedback_used(x: Exchange, rows: list[Feedback] | None = None) -> str | None:
    """The f the teacher saw: the primary row's text with two peers, the joined parts with N-peer fields
    (``rows``: the exchange's ``ordered_feedback`` when the caller has it)."""
    if x.tutors is not None:
        return joined_used(x.tutors, ordered_feedback(x) if rows is None else rows)
    return x.feedback.used_text if x.feedback else None


def joined_used(tutors: list[str], rows: list[Feedback]) -> str | None:
    """The routed tutors' used parts joined by newlines in route order (module docstring); None when none."""
    parts = {f.tutor: f.used_text for f in rows if not f.shadow and f.used_text}
    texts = [parts[t] for t in tutors if t in parts]
    return "\n".join(texts) if texts else None


def peer_fields(x: Exchange, rows: list[Feedback] | None = None) -> dict[str, Any]:
    """The exchange's N-peer fields as the trainer reported them; none when it had none (``tutors`` NULL)."""
    if x.tutors is None:
        return {}
    return {"tutors": list(x.tutors), "quarantined": list(x.quarantined or []), "route_reason": x.route_reason,
            "feedbacks": [feedback_record(f) for f in (ordered_feedback(x) if rows is None else rows)]}


def ordered_feedback(x: Exchange) -> list[Feedback]:
    """Every feedback row of the exchange: the primary one first, then the other tutors' in stored order."""
    rows = list(x.rollout.feedbacks)
    return sorted(rows, key=lambda f: f.id != x.feedback_id)


def feedback_record(f: Feedback) -> dict[str, Any]:
    """A feedback row as one record of ``ExchangeEvent.feedbacks`` (``opcod_core.step.peer_fields``)."""
    return {"tutor": f.tutor, "quarantined": bool(f.shadow), "raw": f.raw, "concept": f.concept,
            "category": f.category, "sanitised": f.sanitised, "redactions": list(f.redactions or []),
            "used": f.used_text, "source": f.source, "approval": f.approval,
            **({"poisoned": True} if f.poisoned else {})}
