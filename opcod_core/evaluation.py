"""avg@k accuracy of a student on a list of questions.

avg@k = mean over questions of (correct samples / k): k independent samples per question at the
evaluation temperature, each verified against the gold answer. The sampling seed is a pure function
of the caller's seed so that evaluations are reproducible and a resumed run evaluates identically.
"""

from __future__ import annotations

from dataclasses import dataclass

from opcod_core.data.answers import is_correct
from opcod_core.data.types import Item
from opcod_core.generation.base import SamplingParams
from opcod_core.prompts import rollout_messages


@dataclass(frozen=True)
class EvalScore:
    accuracy: float
    n_items: int
    k: int


def evaluate(student, items: list[Item], k: int, temperature: float, max_new_tokens: int,
             seed: int, batch_prompts: int = 32) -> EvalScore:
    if not items:
        return EvalScore(0.0, 0, k)
    params = SamplingParams(n=k, temperature=temperature, max_new_tokens=max_new_tokens, seed=seed)
    total = 0.0
    for start in range(0, len(items), batch_prompts):
        chunk = items[start:start + batch_prompts]
        prompts = [student.render(rollout_messages(it.question, list(it.labels), list(it.choices),
                                                   it.answer_type)) for it in chunk]
        outs = student.sample(prompts, SamplingParams(**{**params.__dict__, "seed": seed + start}))
        for it, comps in zip(chunk, outs, strict=True):
            total += sum(is_correct(it, c.text)[1] for c in comps) / k
    return EvalScore(total / len(items), len(items), k)
