"""Mean and 95% confidence interval over seeds, and the Pareto verdict.

The interval is Student's t: mean ± t(0.975, n−1) · s / √n with s the sample standard deviation
(n − 1 in the denominator). With three seeds t = 4.303, so intervals are wide: the report says so
rather than hiding it. With one seed (quick mode) there is no interval (``half`` is None).

Pareto verdict of a student against its own initial scores (DESIGN section 2): improved when no
domain falls below its initial value and at least one rises. Over seeds we report (a) in how many
seeds that held, and (b) a verdict read from the intervals of the per-domain changes (``verdict``):
a change counts only when its interval excludes 0, so a mean of +0.002 ± 0.08 is "within noise", not
"improved" (the first report of this benchmark said "improved" on means alone).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Sequence

from opcod_core.vocabulary import pareto_improved

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


def signed(iv: Mapping | None, digits: int = 3) -> str:
    """A difference (an ``Interval.to_dict``) with its sign and, with two or more values, its 95% half-width:
    ``+0.012 ± 0.020``; ``–`` for none."""
    if iv is None:
        return "–"
    text = f"{iv['mean']:+.{digits}f}"
    return text if iv["half"] is None else f"{text} ± {iv['half']:.{digits}f}"


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
    """The Pareto rule (``opcod_core.vocabulary.pareto_improved``) with a float tolerance."""
    return pareto_improved(initial, final, tol=TOL)


def verdict(changes: Mapping[str, Interval]) -> str:
    """Verdict on per-domain changes (final − initial) over seeds, read from their 95% intervals.

    * ``improved on A`` — some domain's interval lies above 0 and none lies below (a Pareto improvement
      that the seeds resolve; the other domains' changes are named "within noise");
    * ``worse on B`` — some domain's interval lies below 0 and none above;
    * ``mixed: up on A, down on B`` — both;
    * ``within noise`` — every interval contains 0, whatever the means (a mean of +0.002 ± 0.08 is not
      an improvement); the sign of the means is given for orientation.
    With one seed there are no intervals: the verdict is on the means and says "(1 seed)"."""
    if any(c.half is None for c in changes.values()):
        means = {d: (0.0 if abs(c.mean) < TOL else c.mean) for d, c in changes.items()}
        if all(m >= 0 for m in means.values()) and any(m > 0 for m in means.values()):
            return "improved (1 seed)"
        lost = [d for d, m in means.items() if m < 0]
        return ("falls on " + ", ".join(lost) if lost else "unchanged") + " (1 seed)"
    up = [d for d, c in changes.items() if c.low > TOL]
    down = [d for d, c in changes.items() if c.high < -TOL]
    rest = [d for d in changes if d not in up and d not in down]
    if up and down:
        return f"mixed: up on {', '.join(up)}, down on {', '.join(down)}"
    if up or down:
        text = ("improved on " if up else "worse on ") + ", ".join(up or down)
        return text + (f" ({', '.join(rest)} within noise)" if rest else "")
    signs = ", ".join(f"{d} {'+' if c.mean > TOL else '-' if c.mean < -TOL else '0'}" for d, c in changes.items())
    return f"within noise (means: {signs})"
