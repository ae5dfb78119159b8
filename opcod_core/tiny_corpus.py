"""The texts a ``tiny:`` model's byte-level BPE is trained on (``opcod_core.build``), also the base of the
word-level vocabulary of the science worlds (``opcod_core.wordtok``)."""

from __future__ import annotations

from opcod_core.anchoring import TutorTemplate, render_tutor_messages
from opcod_core.data.builtin import builtin_corpus, builtin_items
from opcod_core.prompts import format_choices, rollout_messages, teacher_messages


def tiny_corpus(template: TutorTemplate) -> list[str]:
    """The built-in questions plus every prompt text the run will show a tiny model (rollout,
    self-teacher and tutor prompts), so that the BPE vocabulary covers the templates too and the
    prompts stay short."""
    texts = list(builtin_corpus())
    for item in builtin_items():
        labels, choices = list(item.labels), list(item.choices)
        msgs = rollout_messages(item.question, labels, choices, item.answer_type)
        msgs += teacher_messages(item.question, labels, choices, item.answer_type,
                                 solution=f"{item.meta.get('fact', '')} Answer: {item.gold}",
                                 feedback=f"Concept: {item.meta.get('concept', '')}. Recall it.")
        tutor_msgs, prefill = render_tutor_messages(template, item.question, format_choices(labels, choices),
                                                    f"Answer: {item.gold}")
        texts += [m["content"] for m in msgs + tutor_msgs] + [prefill + f"{item.meta.get('concept', '')}</concept>"]
    return texts
