"""avg@k accuracy of a student on a list of questions.

avg@k = mean over questions of (correct samples / k): k independent samples per question at the
evaluation temperature, each verified against the gold answer. The sampling seed is a pure function
of the caller's seed so that evaluations are reproducible and a resumed run evaluates identically.
``evaluate_domains`` scores one student on several domains in shared generation batches (larger
batches are what makes CPU generation efficient) and reports each domain separately.
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


def evaluate_domains(student, items_by_domain: dict[str, list[Item]], k: int, temperature: float,
                     max_new_tokens: int, seed: int, batch_prompts: int = 32) -> dict[str, EvalScore]:
    """avg@k per domain, generated in batches that mix the domains."""
    flat = [(d, it) for d, items in items_by_domain.items() for it in items]
    per_domain: dict[str, float] = {d: 0.0 for d in items_by_domain}
    for start in range(0, len(flat), batch_prompts):
        chunk = flat[start:start + batch_prompts]
        prompts = [student.render(rollout_messages(it.question, list(it.labels), list(it.choices),
                                                   it.answer_type)) for _, it in chunk]
        params = SamplingParams(n=k, temperature=temperature, max_new_tokens=max_new_tokens, seed=seed + start)
        for (d, it), comps in zip(chunk, student.sample(prompts, params), strict=True):
            per_domain[d] += sum(is_correct(it, c.text)[1] for c in comps) / k
    return {d: EvalScore(per_domain[d] / len(items) if items else 0.0, len(items), k)
            for d, items in items_by_domain.items()}
