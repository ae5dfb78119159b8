"""Does a warmed-up student have the knowledge split its config intends? (``StudentConfig.warmup_expect``)

Why: a benchmark built on students whose skew came out differently (a chemistry specialist that is no
longer better at chemistry) measures something else than it says, and nothing in the numbers shows it.
Since a warm-up's end point can depend on the CPU's float path, the build itself checks the result:
after the warm-up, plain-context accuracy avg@4 on the whole validation split of each domain named in
``warmup_expect`` (temperature from ``eval``, a fixed sampling seed) must lie in the stated interval.
A miss raises ``BuildCheckError`` naming the student, the domain, the measured value and the interval,
before the student is cached, so no run starts from it. The measured values are written next to the
cached weights (``build_check.json``) for reports.
"""

from __future__ import annotations

import json
from pathlib import Path

from opcod_core.evaluation import evaluate_domains

CHECK_K = 4
CHECK_SEED = 1_000_003


class BuildCheckError(RuntimeError):
    """A warmed-up student missed its intended accuracy on a domain (``measured``: every value)."""

    def __init__(self, message: str, measured: dict[str, float]):
        super().__init__(message)
        self.measured = measured


def measure_student(rt, domains, config, data) -> dict[str, float]:
    """Plain avg@4 accuracy of ``rt`` on the whole validation split of each of ``domains``."""
    max_new = config.eval.max_new_tokens or config.rollout.max_new_tokens
    scores = evaluate_domains(rt, {d: data.get(d, "validation") for d in domains}, k=CHECK_K,
                              temperature=config.eval.temperature, max_new_tokens=max_new, seed=CHECK_SEED)
    return {d: sc.accuracy for d, sc in scores.items()}


def check_build(rt, st, config, data) -> dict[str, float]:
    """Measures the student on its ``warmup_expect`` domains; raises ``BuildCheckError`` on a miss."""
    expect = st.warmup_expect or {}
    measured = measure_student(rt, list(expect), config, data)
    misses = [f"{d}: {measured[d]:.3f} not in [{lo:g}, {hi:g}]" for d, (lo, hi) in expect.items()
              if not lo <= measured[d] <= hi]
    if misses:
        raise BuildCheckError(f"student {st.name}: the warm-up missed its intended knowledge split "
                              f"(validation avg@{CHECK_K}): " + "; ".join(misses)
                              + ". Change the warm-up (steps, lr, schedule) or warmup_expect; nothing was cached.",
                              measured)
    return measured


def write_check(cached: Path, st, measured: dict[str, float], warmup: dict | None = None) -> None:
    """``build_check.json`` next to the cached weights: the measured split, the intervals and the warm-up's
    record (steps run, when the converge schedule began its decay)."""
    (Path(cached) / "build_check.json").write_text(json.dumps(
        {"student": st.name, "k": CHECK_K, "split": "validation", "measured": measured, "warmup": warmup or {},
         "expect": {d: list(b) for d, b in (st.warmup_expect or {}).items()}}, indent=1))
