"""A stored exchange as the trainer's exchange event (``opcod_core.events.ExchangeEvent``).

Why one function: an exchange a person edits, approves or replays goes back to the trainer as the event
it was recorded from, and the export writes the same schema as ``events.jsonl``, so one parser reads a
headless run's log and a served run's export. The rows keep every field of the event except the key of
an edited exchange's origin (the row links it by id instead: ``origin_exchange_id``).
"""

from __future__ import annotations

from app.models import Exchange
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
        override_id=str(x.override_id) if x.override_id is not None else None)
