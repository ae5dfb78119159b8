"""Break rate: does the peer's feedback talk the self-teacher out of a correct answer?

For a seeded sample of *correct* rollouts whose teacher context used kept feedback, decode greedily
from the self-teacher context with (s, f) and from the context with s alone (the student context
when there is no s), and check each answer. A rollout is "broken" by the feedback when the answer
is correct with s alone but wrong with (s, f). Each sample is reported with the tutor's cognizance
(its gap Δ ≤ τ in this round's gate) and a difficulty bin (share of the tutee's n rollouts on the
prompt that were correct: hard < 1/3 ≤ medium < 2/3 ≤ easy), which is how the paper splits it.
"""

from __future__ import annotations

import random

from opcod_core.data.answers import is_correct
from opcod_core.generation.base import SamplingParams
from opcod_core.prompts import teacher_messages


def difficulty_bin(frac_correct: float) -> str:
    if frac_correct < 1 / 3:
        return "hard"
    return "medium" if frac_correct < 2 / 3 else "easy"


def break_samples(ctx, rows, key_of) -> list[dict]:
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
    with_f, without_f = [], []
    for r in chosen:
        it = r.item
        with_f.append(r.example.teacher_prefix)
        without_f.append(ctx.tutee.render(teacher_messages(it.question, list(it.labels), list(it.choices),
                                                           it.answer_type, solution=r.s_text, feedback=None)))
    params = SamplingParams(n=1, temperature=0.0, max_new_tokens=cfg.rollout.max_new_tokens,
                            stop=tuple(cfg.rollout.stop))
    outs = ctx.tutee.sample(with_f + without_f, params)
    gate = ctx.tutor_gate
    cognizant = bool(gate is not None and gate.delta <= gate.tau + 1e-9)
    events = []
    for i, r in enumerate(chosen):
        ok_f = is_correct(r.item, outs[i][0].text)[1]
        ok_s = is_correct(r.item, outs[len(chosen) + i][0].text)[1]
        fc = frac[r.p]
        events.append({"type": "break", **ctx.position, "exchange_key": key_of(r),
                       "tutor_cognizant": cognizant, "difficulty": difficulty_bin(sum(fc) / len(fc)),
                       "correct_with_sf": bool(ok_f), "correct_with_s": bool(ok_s),
                       "broken": bool(ok_s and not ok_f)})
    return events
