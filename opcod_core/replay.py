"""Replay: what would the self-teacher have said with different feedback?

Given a stored exchange (the tutee's rollout tokens, the chosen sibling s, the feedback used) and
either edited feedback text or another tutor checkpoint (whose feedback is generated afresh with
the run's tutor template and anchoring check), recompute with the tutee's current weights:

* the per-token divergence between the student context and the self-teacher context, before (the
  stored feedback) and after (the new feedback), over exactly the rollout's tokens;
* the teacher's answer distribution over the choice labels before and after: the probability of
  each label as the next token after the teacher context followed by the rollout's own reasoning
  up to its last "Answer:" (or a bare "Answer:" when the rollout never states one), renormalised
  over the labels. Numeric questions have no distribution (None).

Nothing is trained and nothing stored is changed: a replay is a measurement.
"""

from __future__ import annotations


from opcod_core.anchoring import classify_feedback, render_tutor_messages
from opcod_core.controls import ReplayRequest
from opcod_core.events import ExchangeEvent, ReplayEvent
from opcod_core.generation.base import SamplingParams
from opcod_core.prompts import format_choices, rollout_messages, teacher_context


def _answer_distribution(tutee, teacher_prefix: list[int], exchange: ExchangeEvent) -> dict[str, float] | None:
    labels = exchange.labels
    if not labels:
        return None
    text = exchange.rollout_text
    cut = text.rfind("Answer:")
    lead = text[: cut + len("Answer:")] if cut >= 0 else "Answer:"
    prefix = teacher_prefix + tutee.encode(lead)
    probs = tutee.next_token_distribution(prefix, [tutee.encode(" " + lab) for lab in labels])
    return dict(zip(labels, probs, strict=True))


def replay(tutee, exchange: ExchangeEvent, new_feedback: str | None, loss_cfg, context_mode: str) -> dict:
    """Divergence and answer distribution with the stored feedback vs ``new_feedback``."""
    q, labels, choices, answer_type = exchange.question, exchange.labels, exchange.choices, exchange.answer_type
    student_prefix = tutee.render(rollout_messages(q, labels, choices, answer_type))
    rollout = list(exchange.token_ids)

    def side(feedback):
        tc = teacher_context(context_mode, q, labels, choices, answer_type, exchange.s_text, feedback)
        prefix = tutee.render(tc.messages)
        div = tutee.divergence_between([student_prefix], [prefix], [rollout], loss_cfg)[0]
        return {"feedback": tc.feedback, "context_used": tc.used, "divergence": div,
                "answer_distribution": _answer_distribution(tutee, prefix, exchange),
                "mean_divergence": sum(div) / max(len(div), 1)}

    before, after = side(exchange.feedback_used), side(new_feedback)
    return {"tokens": exchange.tokens, "before": before, "after": after,
            "effect": [a - b for a, b in zip(after["divergence"], before["divergence"], strict=True)]}


def feedback_from_checkpoint(tutor, checkpoint_dir, exchange: ExchangeEvent, template, tutor_cfg, seed: int) -> dict:
    """Generate feedback on the exchange's rollout from ``tutor`` with weights from a checkpoint."""
    labels, choices = exchange.labels, exchange.choices
    messages, prefill = render_tutor_messages(template, exchange.question, format_choices(labels, choices),
                                              exchange.rollout_text,
                                              gold=exchange.gold if template.show_gold else None)
    prompt = tutor.render(messages, prefill=prefill)
    params = SamplingParams(n=1, temperature=tutor_cfg.temperature, max_new_tokens=tutor_cfg.max_new_tokens,
                            stop=tuple(template.stop), seed=seed)
    raw = prefill + tutor.sample_with_checkpoint(checkpoint_dir, [prompt], params)[0][0].text
    v = classify_feedback(raw, exchange.question, gold=exchange.gold, choices=choices, labels=labels)
    return {"raw": raw, "category": v.category, "concept": v.concept, "sanitised": v.sanitised}


def replay_exchange(trainer, rq: ReplayRequest) -> ReplayEvent:
    """A replay request served between steps by a running trainer; returns a ``replay`` event."""
    ex = rq.exchange
    try:
        tutee = trainer.students[ex.tutee]
        generated = None
        feedback = rq.feedback
        if rq.tutor_checkpoint:
            generated = feedback_from_checkpoint(trainer.students[ex.tutor], rq.tutor_checkpoint, ex,
                                                 trainer.template, trainer.config.tutor, trainer.config.seed)
            if feedback is None:
                feedback = generated["sanitised"]
        result = replay(tutee, ex, feedback, trainer.config.loss, trainer.config.context_mode)
        result["generated_feedback"] = generated
        return ReplayEvent(id=rq.id, exchange_key=ex.key, status="done", result=result)
    except Exception as exc:  # a bad replay must not kill the run; the error is reported
        return ReplayEvent(id=rq.id, exchange_key=ex.key, status="failed", error=f"{type(exc).__name__}: {exc}")
