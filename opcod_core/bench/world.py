"""Is the knowledge split real? Measures a pair of students on one split (validation by default).

For each student and each domain, avg@k accuracy of answers sampled in three contexts:

* ``plain``: the student context (the question alone) — what evaluation measures;
* ``peer_hint``: the self-teacher context with the *peer's* feedback: the peer writes feedback on the
  student's own first attempt through the run's tutor template, the anchoring check classifies and
  sanitises it, and only kept feedback is put in context (a question whose feedback is not kept is
  answered in the plain context, so this is what OPCoD's teacher would actually see);
* ``reference_hint``: the self-teacher context with the item's reference hint f alone (an upper bound
  of what a cognizant tutor's feedback can do);
* ``with_s``: the self-teacher context with a correct solution s (the item's worked answer, as a correct
  sibling rollout would read) and no feedback;
* ``with_s_f``: the self-teacher context with s and the reference hint, the s+f context of OPCoD.

It also reports the peer's kept rate per domain. A usable world has, for each student, high ``plain``
accuracy on its strong domain, low ``plain`` accuracy on its weak domain, and ``peer_hint`` accuracy
on the weak domain well above ``plain``: then the peer's feedback carries knowledge the student lacks.
"""

from __future__ import annotations

import random

from opcod_core.anchoring import classify_feedback, render_tutor_messages
from opcod_core.data.answers import is_correct
from opcod_core.data.types import Item
from opcod_core.generation.base import SamplingParams
from opcod_core.prompts import format_choices, rollout_messages, teacher_messages
from opcod_core.warmup import answer_target, sanitised_hint


def _accuracy(student, items: list[Item], prompts: list[list[int]], k: int, temperature: float,
              max_new: int, seed: int, batch: int = 32) -> float:
    total = 0.0
    for start in range(0, len(items), batch):
        params = SamplingParams(n=k, temperature=temperature, max_new_tokens=max_new, seed=seed + start)
        outs = student.sample(prompts[start:start + batch], params)
        for it, comps in zip(items[start:start + batch], outs, strict=True):
            total += sum(is_correct(it, c.text)[1] for c in comps) / k
    return total / max(len(items), 1)


def _peer_feedback(student, peer, items: list[Item], template, tutor_cfg, max_new: int, seed: int) -> list[str | None]:
    """The peer's kept, sanitised feedback on the student's first attempt at each item (None: not kept)."""
    attempts = student.sample([student.render(rollout_messages(it.question, list(it.labels), list(it.choices),
                                                               it.answer_type)) for it in items],
                              SamplingParams(n=1, temperature=1.0, max_new_tokens=max_new, seed=seed))
    prompts = []
    for it, comps in zip(items, attempts, strict=True):
        messages, prefill = render_tutor_messages(template, it.question,
                                                  format_choices(list(it.labels), list(it.choices)), comps[0].text)
        prompts.append(peer.render(messages, prefill=prefill))
    outs = peer.sample(prompts, SamplingParams(n=1, temperature=tutor_cfg.temperature,
                                               max_new_tokens=tutor_cfg.max_new_tokens, stop=tuple(template.stop),
                                               seed=seed + 1))
    feedback = []
    for it, comps in zip(items, outs, strict=True):
        v = classify_feedback(template.prefill + comps[0].text, it.question, gold=it.gold,
                              choices=list(it.choices), labels=list(it.labels))
        feedback.append(v.sanitised if v.kept else None)
    return feedback


def measure_world(config, students: dict, data, split: str = "validation", k: int = 4,
                  max_items: int | None = 48, seed: int = 0) -> dict:
    """``{student: {domain: {"plain", "peer_hint", "reference_hint", "peer_kept_rate", "n_items"}}}``."""
    from opcod_core.build import tutor_template

    template = tutor_template(config)
    names = [s.name for s in config.students]
    max_new = config.eval.max_new_tokens or config.rollout.max_new_tokens
    temp = config.eval.temperature
    out: dict = {}
    for si, name in enumerate(names):
        st, peer = students[name], students[names[1 - si]]
        out[name] = {}
        for di, d in enumerate(config.data.domains):
            items = data.get(d, split)[:max_items] if max_items else data.get(d, split)
            s = random.Random(f"{seed}-world-{si}-{di}").randrange(2**31)
            plain = [st.render(rollout_messages(it.question, list(it.labels), list(it.choices), it.answer_type))
                     for it in items]
            fb = _peer_feedback(st, peer, items, template, config.tutor, max_new, s)
            peer_ctx = [st.render(teacher_messages(it.question, list(it.labels), list(it.choices), it.answer_type,
                                                   solution=None, feedback=f)) for it, f in zip(items, fb, strict=True)]
            ref_ctx = [st.render(teacher_messages(it.question, list(it.labels), list(it.choices), it.answer_type,
                                                  solution=None, feedback=sanitised_hint(it, template)))
                       for it in items]
            sol_ctx = [st.render(teacher_messages(it.question, list(it.labels), list(it.choices), it.answer_type,
                                                  solution=answer_target(it), feedback=None)) for it in items]
            sf_ctx = [st.render(teacher_messages(it.question, list(it.labels), list(it.choices), it.answer_type,
                                                 solution=answer_target(it), feedback=sanitised_hint(it, template)))
                      for it in items]
            out[name][d] = {
                "plain": _accuracy(st, items, plain, k, temp, max_new, s + 11),
                "peer_hint": _accuracy(st, items, peer_ctx, k, temp, max_new, s + 12),
                "reference_hint": _accuracy(st, items, ref_ctx, k, temp, max_new, s + 13),
                "with_s": _accuracy(st, items, sol_ctx, k, temp, max_new, s + 14),
                "with_s_f": _accuracy(st, items, sf_ctx, k, temp, max_new, s + 15),
                "peer_kept_rate": sum(f is not None for f in fb) / max(len(fb), 1),
                "n_items": len(items),
            }
    return out
