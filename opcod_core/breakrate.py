"""Break rate: does the peer's feedback talk the self-teacher out of a correct answer?

The paper's figure is a conditional rate,

    break rate = P(wrong with f | right without f)
               = #(right without f and wrong with f) / #(right without f),

"of the answers the self-teacher got right without the feedback, the share the feedback turned
wrong". It is always reported with its counts: ``broken`` (numerator) and ``eligible`` (denominator,
the samples whose teacher was right without f). With no eligible sample the rate is undefined and
absent (never 0). Rates over several steps, tutors or seeds sum numerators and denominators
(``break_counts``), never average per-step rates.

Probe: for a seeded sample of *correct* rollouts whose teacher context used kept feedback, decode
greedily from the real self-teacher context (context ``s+f``, or ``f`` in context mode f) and from
the same teacher context without f, built by the same ``prompts.teacher_context`` as the real one
(so: with s alone in mode s+f; the bare question, which is the student context, in mode f or when
no sibling existed), and check each answer. Each sample records both verdicts, the context it was
probed in and its baseline (``"s"`` or ``"none"``: what the teacher saw without f), the tutor's
cognizance (its gap Δ ≤ τ in this round's gate) and a difficulty bin (share of the tutee's n
rollouts on the prompt that were correct: hard < 1/3 ≤ medium < 2/3 ≤ easy), which is how the paper
splits it.

N peers (``opcod_core.step_routing``): a probe is one tutor's feedback on one rollout, attributed to that
tutor (the event's ``tutor``) with that tutor's cognizance. The pool, in rollout order, holds for each
correct rollout: its real teacher context when that context has feedback from one tutor (the only case
with two peers: the probe is exactly the one it always was), or, when several tutors' feedback is joined
in it (routing mode ``all``), one probe per tutor with the context (s, that tutor's f); then one probe per
quarantined tutor whose shadow feedback anchoring kept, with (s, its f) and ``shadow: true``, so that a
quarantined tutor keeps being measured (the evidence that can lift an automatic quarantine). The seeded
sample of ``samples_per_step`` is drawn from that pool.
"""

from __future__ import annotations

import random
from typing import Iterable

from opcod_core.data.answers import is_correct
from opcod_core.events import BreakEvent
from opcod_core.generation.base import SamplingParams
from opcod_core.prompts import teacher_context


def difficulty_bin(frac_correct: float) -> str:
    if frac_correct < 1 / 3:
        return "hard"
    return "medium" if frac_correct < 2 / 3 else "easy"


def break_counts(samples: Iterable[dict]) -> dict:
    """``{"samples", "eligible", "broken", "rate"}`` over break samples (events or rows as dicts with
    ``correct_without_f`` and ``broken``); ``rate`` is None when no sample is eligible."""
    n = eligible = broken = 0
    for b in samples:
        n += 1
        eligible += bool(b["correct_without_f"])
        broken += bool(b["broken"])
    return {"samples": n, "eligible": eligible, "broken": broken,
            "rate": broken / eligible if eligible else None}


def step_metrics(samples: list[BreakEvent]) -> dict[str, float]:
    """A step's ``break/*`` metrics: samples, eligible (denominator), broken (numerator) and, only when
    something is eligible, ``break/rate``; nothing at all for a step without samples."""
    if not samples:
        return {}
    c = break_counts(b.to_dict() for b in samples)
    m = {"break/samples": float(c["samples"]), "break/eligible": float(c["eligible"]),
         "break/broken": float(c["broken"])}
    if c["rate"] is not None:
        m["break/rate"] = c["rate"]
    return m


def probe_pool(rows) -> list[tuple]:
    """(row, tutor, feedback or None for the real context, shadow) of every possible probe (module docstring)."""
    pool = []
    for r in rows:
        if not r.correct:
            continue
        route = r.route
        used_by = [t for t in route.tutors if r.feedbacks[t]["used"]] if route is not None else []
        if r.used in ("s+f", "f"):
            if len(used_by) > 1:
                pool += [(r, t, r.feedbacks[t]["used"], False) for t in used_by]
            else:
                pool.append((r, r.tutor, None, False))
        for t in route.quarantined if route is not None else ():
            if r.feedbacks.get(t, {}).get("sanitised"):
                pool.append((r, t, r.feedbacks[t]["sanitised"], True))
    return pool


def break_samples(ctx, rows, key_of) -> list[BreakEvent]:
    cfg = ctx.config
    want = cfg.break_rate.samples_per_step
    pool = probe_pool(rows)
    if not want or not pool:
        return []
    rng = random.Random(f"{cfg.seed}-break-{ctx.global_step}")
    chosen = rng.sample(pool, min(want, len(pool)))
    frac = {}
    for r in rows:
        frac.setdefault(r.p, []).append(r.correct)
    with_f, contexts, without_f, baselines = [], [], [], []
    for r, _tutor, feedback, _shadow in chosen:
        prefix, used = _with_f(ctx, r, feedback)
        with_f.append(prefix)
        contexts.append(used)
        base = _context(ctx, r, None)
        without_f.append(ctx.tutee.render(base.messages))
        baselines.append(base.used)
    params = SamplingParams(n=1, temperature=0.0, max_new_tokens=cfg.rollout.max_new_tokens,
                            stop=tuple(cfg.rollout.stop))
    outs = ctx.tutee.sample(with_f + without_f, params)
    events = []
    for i, ((r, tutor, _f, shadow), context, baseline) in enumerate(zip(chosen, contexts, baselines, strict=True)):
        ok_f = bool(is_correct(r.item, outs[i][0].text)[1])
        ok_base = bool(is_correct(r.item, outs[len(chosen) + i][0].text)[1])
        fc = frac[r.p]
        gate = ctx.gates.get(tutor) if ctx.gates else ctx.tutor_gate
        events.append(BreakEvent(**{**ctx.position, "tutor": tutor}, exchange_key=key_of(r), domain=r.item.domain,
                                 tutor_cognizant=bool(gate is not None and gate.delta <= gate.tau + 1e-9),
                                 difficulty=difficulty_bin(sum(fc) / len(fc)), context=context,
                                 baseline=baseline, correct_with_f=ok_f, correct_without_f=ok_base,
                                 eligible=ok_base, broken=ok_base and not ok_f, shadow=True if shadow else None))
    return events


def _context(ctx, r, feedback):
    it = r.item
    return teacher_context(ctx.config.context_mode, it.question, list(it.labels), list(it.choices), it.answer_type,
                           r.s_text, feedback)


def _with_f(ctx, r, feedback) -> tuple[list[int], str]:
    """The probe's teacher prompt with f and what it holds: the real one (``feedback`` None), or (s, feedback)."""
    if feedback is None:
        return r.example.teacher_prefix, r.used
    tc = _context(ctx, r, feedback)
    return ctx.tutee.render(tc.messages), tc.used
