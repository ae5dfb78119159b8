"""Human-edited feedback as training examples, and the exchange events they produce.

Why: a researcher may edit a tutor's feedback on a stored exchange (an ``edit`` override). The trainer
queues the edited exchange for its tutee and, at the tutee's next step, distils the *stored* rollout
y (its token ids, unchanged) under a teacher context rebuilt from the question, the stored sibling s and
the human feedback f: the same loss term as an automatic s+f (or f-only) example, in the same batch.
The resulting exchange event names its origin (``origin_key``, ``override_id``) and ``feedback_source:
"human"`` so the audit trail shows which updates a person shaped.
"""

from __future__ import annotations

from opcod_core.data.types import Item
from opcod_core.events import ExchangeEvent
from opcod_core.prompts import rollout_messages, teacher_messages
from opcod_core.step import StepContext
from opcod_core.student_types import DistillExample


def human_examples(ctx: StepContext, pending: list[dict],
                   items_by_id: dict[str, Item]) -> list[tuple[ExchangeEvent, DistillExample]]:
    """One distillation example per queued human edit (the stored exchange event's JSON, with the edited
    ``feedback_used`` and ``override_id``): the stored rollout under (x, s, f_human)."""
    out = []
    for queued in pending:
        ex = ExchangeEvent.model_validate(queued)
        item = items_by_id.get(ex.prompt_id) or Item(ex.prompt_id, ex.domain, ex.question, tuple(ex.choices),
                                                     tuple(ex.labels), ex.gold, ex.answer_type)
        sp = ctx.tutee.render(rollout_messages(item.question, list(item.labels), list(item.choices),
                                               item.answer_type))
        tp = ctx.tutee.render(teacher_messages(item.question, list(item.labels), list(item.choices),
                                               item.answer_type, solution=ex.s_text, feedback=ex.feedback_used))
        out.append((ex, DistillExample(sp, list(ex.token_ids), tp, None)))
    return out


#: What a human-feedback exchange keeps of the stored exchange it was made from.
_KEPT = {"domain", "prompt_id", "question", "choices", "labels", "gold", "rollout_text", "token_ids", "answer",
         "correct", "s_index", "s_text", "tokens", "prompt_index", "rollout_index", "finish_reason", "concept"}


def human_event(ctx: StepContext, ex: ExchangeEvent, example: DistillExample, res) -> ExchangeEvent:
    """The exchange event of a human-feedback example, keyed by the step and the override."""
    return ExchangeEvent(
        **ex.model_dump(include=_KEPT), **{**ctx.position, "tutor": ex.tutor},
        key=f"r{ctx.round}-d{ctx.direction}-s{ctx.step}-human-{ex.override_id}", category="kept",
        feedback_sanitised=ex.feedback_used, feedback_used=ex.feedback_used, feedback_source="human",
        approval="edit", origin_key=ex.key, override_id=ex.override_id,
        context_used="s+f" if ex.s_text else "f", teacher_context=ctx.tutee.decode(example.teacher_prefix),
        divergence=res.divergence, student_logprob=res.student_logprob, loss=res.loss)
