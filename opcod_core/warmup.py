"""Supervised warm-up: make a domain-stronger student (and a usable tutor) from a base model.

``warmup_sft_steps`` steps of supervised training on the train split of the student's warm-up
domains (default: its strong domain) before round 1. Each batch mixes two formats:

* answer format (1 of 2 examples): rollout prompt -> "<worked line> Answer: X" + EOS, where the
  worked line is the item's fact when the dataset provides one (``meta["fact"]``), else nothing;
* tutor format (1 of 2): tutor prompt with the prefilled "<concept>" -> "term</concept> hint" +
  stop string, where the term is the item's concept (``meta["concept"]``) and the hint never
  states the answer.

This is what lets randomly initialised tiny models exercise every path of the trainer (correct and
incorrect rollouts, kept and discarded feedback). For real models it is an optional way to make
the paper's "stronger in one domain" pairs from a single base model. Sampling of warm-up items is
seeded per student, so a warm-up is reproducible and can be cached by its inputs.
"""

from __future__ import annotations

import random

from opcod_core.anchoring import TutorTemplate, render_tutor_messages
from opcod_core.data.types import Item
from opcod_core.prompts import format_choices, rollout_messages


def answer_target(item: Item) -> str:
    fact = item.meta.get("fact")
    return f"{fact} Answer: {item.gold}" if fact else f"Answer: {item.gold}"


def tutor_target(item: Item, stop: str) -> str | None:
    concept = item.meta.get("concept")
    if not concept:
        return None
    hint = item.meta.get("hint") or f"Recall what you know about {concept}."
    return f"{concept}</concept> {hint}{stop}"


def warm_up(student, items: list[Item], steps: int, lr: float, template: TutorTemplate, seed: int,
            batch_size: int = 16, progress=None) -> list[float]:
    """Runs ``steps`` supervised steps on ``items``; returns the loss curve."""
    if not items:
        raise ValueError(f"student {student.name}: no warm-up items")
    rng = random.Random(f"warmup-{seed}-{student.name}")
    eos = student.tokenizer.eos_token or ""
    stop = template.stop[0] if template.stop else "\n"
    curve: list[float] = []
    for step in range(steps):
        prompts, targets = [], []
        for j in range(batch_size):
            item = rng.choice(items)
            tutor_text = tutor_target(item, stop) if j % 2 == 1 else None
            if tutor_text is not None:
                attempt = rng.choice([answer_target(item), f"Answer: {rng.choice(item.labels)}"])
                messages, prefill = render_tutor_messages(
                    template, item.question, format_choices(list(item.labels), list(item.choices)), attempt)
                prompts.append(student.render(messages, prefill=prefill))
                targets.append(student.encode(tutor_text + eos))
            else:
                messages = rollout_messages(item.question, list(item.labels), list(item.choices), item.answer_type)
                prompts.append(student.render(messages))
                targets.append(student.encode(answer_target(item) + eos))
        curve.append(student.sft_step(prompts, targets, lr=lr))
        if progress is not None:
            progress(step + 1, steps, curve[-1])
    return curve
