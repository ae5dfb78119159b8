"""avg@k accuracy of a student on a list of questions.

avg@k = mean over questions of (correct samples / k): k independent samples per question at the
evaluation temperature, each verified against the gold answer. The sampling seed is a pure function
of the caller's seed so that evaluations are reproducible and a resumed run evaluates identically.
``evaluate_domains`` scores one student on several domains in shared generation batches (larger
batches are what makes CPU generation efficient) and reports each domain separately, with each
question's own accuracy (correct samples / k, in item order): what the gate's standard errors
(``opcod_core.gating.gap_uncertainty``) are computed from.

Common random numbers: the trainer passes the *same* seed to every evaluation of a student on a
split (initial, after each round; each gate), so two evaluations of unchanged weights give identical
scores and a change between rounds is the weights' doing, not a new draw of sampling noise.
"""

from __future__ import annotations

from collections.abc import Callable
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
    per_item: tuple[float, ...] = ()    # each question's correct samples / k, in item order


def evaluate_domains(student, items_by_domain: dict[str, list[Item]], k: int, temperature: float,
                     max_new_tokens: int, seed: int, batch_prompts: int = 32,
                     messages: Callable[[Item], list[dict]] | None = None) -> dict[str, EvalScore]:
    """avg@k per domain, generated in batches that mix the domains. ``messages``: each question's context
    (default: the student context, the question alone; the build check passes a self-teacher context)."""
    messages = messages or (lambda it: rollout_messages(it.question, list(it.labels), list(it.choices),
                                                        it.answer_type))
    flat = [(d, it) for d, items in items_by_domain.items() for it in items]
    per_item: dict[str, list[float]] = {d: [] for d in items_by_domain}
    for start in range(0, len(flat), batch_prompts):
        chunk = flat[start:start + batch_prompts]
        prompts = [student.render(messages(it)) for _, it in chunk]
        params = SamplingParams(n=k, temperature=temperature, max_new_tokens=max_new_tokens, seed=seed + start)
        for (d, it), comps in zip(chunk, student.sample(prompts, params), strict=True):
            per_item[d].append(sum(is_correct(it, c.text)[1] for c in comps) / k)
    return {d: EvalScore(sum(per_item[d]) / len(items) if items else 0.0, len(items), k, tuple(per_item[d]))
            for d, items in items_by_domain.items()}
