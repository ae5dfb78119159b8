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


def break_samples(ctx, rows, key_of) -> list[BreakEvent]:
    cfg = ctx.config
    want = cfg.break_rate.samples_per_step
    pool = [r for r in rows if r.correct and r.used in ("s+f", "f")]
    if not want or not pool:
        return []
    rng = random.Random(f"{cfg.seed}-break-{ctx.global_step}")
    chosen = rng.sample(pool, min(want, len(pool)))
    frac = {}
    for r in rows:
        frac.setdefault(r.p, []).append(r.correct)
    with_f, without_f, baselines = [], [], []
    for r in chosen:
        it = r.item
        with_f.append(r.example.teacher_prefix)
        base = teacher_context(cfg.context_mode, it.question, list(it.labels), list(it.choices), it.answer_type,
                               r.s_text, None)
        without_f.append(ctx.tutee.render(base.messages))
        baselines.append(base.used)
    params = SamplingParams(n=1, temperature=0.0, max_new_tokens=cfg.rollout.max_new_tokens,
                            stop=tuple(cfg.rollout.stop))
    outs = ctx.tutee.sample(with_f + without_f, params)
    gate = ctx.tutor_gate
    cognizant = bool(gate is not None and gate.delta <= gate.tau + 1e-9)
    events = []
    for i, (r, baseline) in enumerate(zip(chosen, baselines, strict=True)):
        ok_f = bool(is_correct(r.item, outs[i][0].text)[1])
        ok_base = bool(is_correct(r.item, outs[len(chosen) + i][0].text)[1])
        fc = frac[r.p]
        events.append(BreakEvent(**ctx.position, exchange_key=key_of(r), domain=r.item.domain,
                                 tutor_cognizant=cognizant, difficulty=difficulty_bin(sum(fc) / len(fc)),
                                 context=r.used, baseline=baseline, correct_with_f=ok_f, correct_without_f=ok_base,
                                 eligible=ok_base, broken=ok_base and not ok_f))
    return events
