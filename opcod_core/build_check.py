"""Does a warmed-up student have the knowledge split its config intends? (``StudentConfig.warmup_expect``)

Why: a benchmark built on students whose skew came out differently (a chemistry specialist that is no
longer better at chemistry) measures something else than it says, and nothing in the numbers shows it.
Since a warm-up's end point can depend on the CPU's float path, the build itself checks the result:
after the warm-up, plain-context accuracy avg@4 on the whole validation split of each domain named in
``warmup_expect`` (temperature from ``eval``, a fixed sampling seed) must lie in the stated interval.
A miss raises ``BuildCheckError`` naming the student, the domain, the measured value and the interval,
before the student is cached, so no run starts from it. The measured values are written next to the
cached weights (``build_check.json``) for reports.

The self-teacher check (``StudentConfig.warmup_self_teacher_tolerance``): on each of the student's own
domains, its accuracy in the self-teacher context with a correct solution s (the item's worked answer,
as a correct sibling rollout reads) must not fall below its plain accuracy by more than the tolerance.
Why: every method that uses s distils the student towards that context. Measured on the v3 chemistry
specialist (docs/results/fidelity-v3-recipe.md, row 10): plain 0.874 but 0.703 with a correct s (it
misread the question's formula with a long context), and its chemistry collapsed from 0.87 to 0.06 in
co-distillation while it received no feedback at all. Nothing in the plain split showed it.
"""

from __future__ import annotations

import json
from pathlib import Path

from opcod_core.evaluation import evaluate_domains
from opcod_core.prompts import teacher_messages
from opcod_core.warmup import answer_target

CHECK_K = 4
CHECK_SEED = 1_000_003


class BuildCheckError(RuntimeError):
    """A warmed-up student missed its intended accuracy on a domain (``measured``: every value)."""

    def __init__(self, message: str, measured: dict[str, float], self_teacher: dict[str, float] | None = None):
        super().__init__(message)
        self.measured = measured
        self.self_teacher = self_teacher or {}


def own_domains(st) -> list[str]:
    """The domains whose facts the student's warm-up teaches (the self-teacher check's domains)."""
    return list(st.warmup_domains or ([st.strong_domain] if st.strong_domain else []))


def with_solution(item) -> list[dict]:
    """The self-teacher context with a correct solution s (the item's worked answer) and no feedback."""
    return teacher_messages(item.question, list(item.labels), list(item.choices), item.answer_type,
                            solution=answer_target(item), feedback=None)


def measure_student(rt, domains, config, data, solution: bool = False) -> dict[str, float]:
    """Plain avg@4 accuracy of ``rt`` on the whole validation split of each of ``domains``
    (``solution``: in the self-teacher context with a correct s instead, same sampling seed)."""
    max_new = config.eval.max_new_tokens or config.rollout.max_new_tokens
    scores = evaluate_domains(rt, {d: data.get(d, "validation") for d in domains}, k=CHECK_K,
                              temperature=config.eval.temperature, max_new_tokens=max_new, seed=CHECK_SEED,
                              messages=with_solution if solution else None)
    return {d: sc.accuracy for d, sc in scores.items()}


def self_teacher_misses(st, measured: dict[str, float], self_teacher: dict[str, float]) -> list[str]:
    """Own domains on which accuracy with a correct s falls below plain by more than the tolerance."""
    tol = st.warmup_self_teacher_tolerance
    if tol is None:
        return []
    return [f"{d}: with a correct solution s {self_teacher[d]:.3f} < plain {measured[d]:.3f} - {tol:g}"
            for d in self_teacher if self_teacher[d] < measured[d] - tol]


def check_build(rt, st, config, data) -> tuple[dict[str, float], dict[str, float]]:
    """Measures the student on its ``warmup_expect`` domains (plain) and, with a self-teacher tolerance, on
    its own domains with a correct s; returns (plain, with s); raises ``BuildCheckError`` on a miss."""
    expect = st.warmup_expect or {}
    checked = own_domains(st) if st.warmup_self_teacher_tolerance is not None else []
    measured = measure_student(rt, list(dict.fromkeys([*expect, *checked])), config, data)
    self_teacher = measure_student(rt, checked, config, data, solution=True) if checked else {}
    misses = [f"{d}: {measured[d]:.3f} not in [{lo:g}, {hi:g}]" for d, (lo, hi) in expect.items()
              if not lo <= measured[d] <= hi]
    misses += self_teacher_misses(st, measured, self_teacher)
    if misses:
        raise BuildCheckError(f"student {st.name}: the warm-up missed its intended knowledge split "
                              f"(validation avg@{CHECK_K}): " + "; ".join(misses)
                              + ". Change the warm-up (steps, lr, schedule, own-context share) or warmup_expect / "
                              "warmup_self_teacher_tolerance; nothing was cached.", measured, self_teacher)
    return measured, self_teacher


def write_check(cached: Path, st, measured: dict[str, float], warmup: dict | None = None,
                self_teacher: dict[str, float] | None = None) -> None:
    """``build_check.json`` next to the cached weights: the measured split, the own domains' accuracy with a
    correct s, the intervals and the warm-up's record (steps run, when the converge schedule began its decay)."""
    (Path(cached) / "build_check.json").write_text(json.dumps(
        {"student": st.name, "k": CHECK_K, "split": "validation", "measured": measured,
         "self_teacher": self_teacher or {}, "self_teacher_tolerance": st.warmup_self_teacher_tolerance,
         "warmup": warmup or {}, "expect": {d: list(b) for d, b in (st.warmup_expect or {}).items()}}, indent=1))
