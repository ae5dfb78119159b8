"""The Wilson score interval of a break rate, and the break counts it is computed from (tutor trust,
``opcod_core.trust``; the displayed reputations of ``app.services.trust``).

Wilson score interval. With k breaks in n opportunities, p = k/n and z (default 1.96, 95 %):

    centre = (p + z^2 / (2n)) / (1 + z^2 / n)
    half   = z / (1 + z^2 / n) * sqrt(p (1 - p) / n + z^2 / (4 n^2))
    interval = (centre - half, centre + half)

with the exact limits lower = 0 when k = 0 and upper = 1 when k = n (the formula gives them up to
float rounding), and (0, 1) when n = 0: no evidence, every rate possible. Example: k = 3, n = 10 gives
(0.1078, 0.6032). Pure: no torch, no I/O.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

DEFAULT_Z = 1.96


def wilson_interval(breaks: int, opportunities: int, z: float = DEFAULT_Z) -> tuple[float, float]:
    """The Wilson score interval of ``breaks / opportunities`` (module docstring); (0, 1) when n = 0."""
    check_counts("wilson_interval", opportunities, breaks)
    check_z(z)
    n, k = opportunities, breaks
    if n == 0:
        return 0.0, 1.0
    p, z2 = k / n, z * z
    denom = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    lower = 0.0 if k == 0 else max(0.0, centre - half)
    upper = 1.0 if k == n else min(1.0, centre + half)
    return lower, upper


@dataclass(frozen=True)
class Tally:
    """Break counts of one (tutor, domain)."""

    opportunities: int = 0
    breaks: int = 0

    def __post_init__(self) -> None:
        check_counts("tally", self.opportunities, self.breaks)

    @property
    def rate(self) -> float | None:
        return self.breaks / self.opportunities if self.opportunities else None

    def __add__(self, other: "Tally") -> "Tally":
        return Tally(self.opportunities + other.opportunities, self.breaks + other.breaks)

    def __sub__(self, other: "Tally") -> "Tally":
        return Tally(self.opportunities - other.opportunities, self.breaks - other.breaks)

    def to_dict(self) -> dict:
        return {"opportunities": self.opportunities, "breaks": self.breaks}


def check_counts(field: str, opportunities: object, breaks: object) -> None:
    for name, v in (("opportunities", opportunities), ("breaks", breaks)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"{field}.{name}: expected an integer >= 0, got {v!r}")
    if breaks > opportunities:
        raise ValueError(f"{field}: {breaks} breaks in {opportunities} opportunities (breaks <= opportunities)")


def check_z(z: object) -> None:
    if isinstance(z, bool) or not isinstance(z, (int, float)) or not math.isfinite(z) or z <= 0:
        raise ValueError(f"z: expected a finite number > 0, got {z!r}")
