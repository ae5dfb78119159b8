"""Mean and 95% confidence interval over seeds, and the Pareto verdict.

The interval is Student's t: mean ± t(0.975, n−1) · s / √n with s the sample standard deviation
(n − 1 in the denominator). With three seeds t = 4.303, so intervals are wide: the report says so
rather than hiding it. With one seed (quick mode) there is no interval (``half`` is None).

Pareto verdict of a student against its own initial scores (DESIGN section 2): improved when no
domain falls below its initial value and at least one rises. Over seeds we report (a) in how many
seeds that held, and (b) the verdict on the mean changes with their intervals: ``improved`` when every
domain's mean change is ≥ 0 and one is > 0; ``improved (significant)`` when in addition some domain's
interval lies above 0 and no domain's interval lies entirely below 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

# two-sided 95% Student t quantiles by degrees of freedom
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
         10: 2.228, 12: 2.179, 15: 2.131, 20: 2.086, 30: 2.042}


TOL = 1e-9  # accuracies are multiples of 1/(items*k): smaller differences are float noise


def t975(df: int) -> float:
    if df < 1:
        raise ValueError("t quantile needs at least one degree of freedom")
    if df in _T975:
        return _T975[df]
    below = [d for d in _T975 if d < df]
    return _T975[max(below)] if df < 30 else 1.96


@dataclass(frozen=True)
class Interval:
    mean: float
    half: float | None    # half-width of the 95% interval; None with fewer than two values
    n: int

    @property
    def low(self) -> float | None:
        return None if self.half is None else self.mean - self.half

    @property
    def high(self) -> float | None:
        return None if self.half is None else self.mean + self.half

    def fmt(self, digits: int = 3) -> str:
        if self.half is None:
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} ± {self.half:.{digits}f}"

    def to_dict(self) -> dict:
        return {"mean": self.mean, "half": self.half, "n": self.n}


def interval(values: Sequence[float]) -> Interval:
    vals = [float(v) for v in values]
    if not vals:
        raise ValueError("interval of no values")
    n = len(vals)
    mean = sum(vals) / n
    if n < 2:
        return Interval(mean, None, n)
    sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1))
    return Interval(mean, t975(n - 1) * sd / math.sqrt(n), n)


def pareto(initial: Mapping[str, float], final: Mapping[str, float]) -> bool:
    return (all(final[d] >= initial[d] - TOL for d in initial)
            and any(final[d] > initial[d] + TOL for d in initial))


def verdict(changes: Mapping[str, Interval]) -> str:
    """Verdict on per-domain mean changes (final − initial) with their intervals."""
    means = {d: (0.0 if abs(c.mean) < TOL else c.mean) for d, c in changes.items()}
    if not (all(m >= 0 for m in means.values()) and any(m > 0 for m in means.values())):
        lost = [d for d, m in means.items() if m < 0]
        return "not improved (falls on " + ", ".join(lost) + ")" if lost else "unchanged"
    if any(c.half is None for c in changes.values()):
        return "improved"
    up = any(c.low > 0 for c in changes.values())
    down = any(c.high < 0 for c in changes.values())
    return "improved (significant)" if up and not down else "improved"
