"""Tutor trust: how often each tutor's feedback breaks a tutee, with its uncertainty, and the quarantine
of tutors that break too often (co-distillation among N peers; ``routing`` skips quarantined tutors).

Pure and deterministic like ``gating``: no torch, no I/O, no environment variables. The state is an
immutable record; every update returns a new state and the changes it made.

Counts. Per (tutor, domain of the tutee's question), from the break probes of ``opcod_core.breakrate``
(same definition): an **opportunity** is a probe in which the tutee's self-teacher was right without
the feedback (with s alone: breakrate's ``correct_without_f``, its ``eligible``), and a **break** is an
opportunity in which it was wrong once the tutor's feedback was added (s+f: breakrate's ``broken``).
The break rate is breaks / opportunities, undefined (None, never 0) with no opportunity. Counts are
summed over steps, never averaged rates (``breakrate.break_counts`` counts each group of probes).

Wilson score interval. With k breaks in n opportunities, p = k/n and z (default 1.96, 95 %):

    centre = (p + z^2 / (2n)) / (1 + z^2 / n)
    half   = z / (1 + z^2 / n) * sqrt(p (1 - p) / n + z^2 / (4 n^2))
    interval = (centre - half, centre + half)

with the exact limits lower = 0 when k = 0 and upper = 1 when k = n (the formula gives them up to
float rounding), and (0, 1) when n = 0: no evidence, every rate possible. Example: k = 3, n = 10 gives
(0.1078, 0.6032).

Quarantine rule (``auto_quarantine`` on, the default). A tutor is quarantined automatically when the
Wilson LOWER bound of its break rate on some domain exceeds ``threshold`` (default 0.5, strict >): we
are confident (at level z) that it breaks more often than the threshold there. The reason names the
tutor, the domain with the highest lower bound, the counts, the rate and the bound. An automatic
quarantine is lifted automatically once the lower bound is at or below the threshold on every domain
(the rule is re-applied after every update). With ``auto_quarantine`` off nothing is quarantined
automatically (turning it off lifts the automatic quarantines in force), and counts and intervals are
still tracked.

People. A person may quarantine or lift any tutor; each human decision holds against the evidence
that existed when it was made:
- A human quarantine is only ever lifted by a person (the automatic rule never lifts it).
- A human lift starts a fresh evidence window for that tutor: from then on the automatic rule judges
  only the counts gathered after the lift (the cumulative counts minus a snapshot taken at the lift).
  So the lift is not undone by the evidence it overruled; the tutor is quarantined again only when new
  evidence alone pushes a lower bound above the threshold (at z = 1.96 and threshold 0.5 that takes at
  least 4 breaks in 4 new opportunities). The next human lift takes a new snapshot. The displayed
  counts, rates and intervals (``rows``) stay cumulative.

Every change is a ``TrustChange`` (tutor, action quarantine/lift, source auto/human, step, reason,
domain) that the caller emits as an event and, for human ones, writes to the audit log. ``to_dict`` /
``from_dict`` carry the whole state as JSON-safe values, for exact resume from a checkpoint.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Iterable, Literal, Mapping

from opcod_core.breakrate import break_counts

Action = Literal["quarantine", "lift"]
Source = Literal["auto", "human"]
DEFAULT_Z = 1.96
DEFAULT_THRESHOLD = 0.5


def wilson_interval(breaks: int, opportunities: int, z: float = DEFAULT_Z) -> tuple[float, float]:
    """The Wilson score interval of ``breaks / opportunities`` (module docstring); (0, 1) when n = 0."""
    _check_counts("wilson_interval", opportunities, breaks)
    _check_z(z)
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
        _check_counts("tally", self.opportunities, self.breaks)

    @property
    def rate(self) -> float | None:
        return self.breaks / self.opportunities if self.opportunities else None

    def __add__(self, other: "Tally") -> "Tally":
        return Tally(self.opportunities + other.opportunities, self.breaks + other.breaks)

    def __sub__(self, other: "Tally") -> "Tally":
        return Tally(self.opportunities - other.opportunities, self.breaks - other.breaks)

    def to_dict(self) -> dict:
        return {"opportunities": self.opportunities, "breaks": self.breaks}


@dataclass(frozen=True)
class TrustChange:
    """One quarantine or lift: what the caller emits as an event (and audit-logs when ``source`` is human)."""

    tutor: str
    action: Action
    source: Source
    step: int
    reason: str
    domain: str | None = None           # the domain that triggered an automatic quarantine

    def to_dict(self) -> dict:
        return {"tutor": self.tutor, "action": self.action, "source": self.source, "step": self.step,
                "reason": self.reason, "domain": self.domain}

    @classmethod
    def from_dict(cls, d: Mapping) -> "TrustChange":
        return cls(d["tutor"], d["action"], d["source"], int(d["step"]), d["reason"], d.get("domain"))


@dataclass(frozen=True)
class TrustRow:
    """One (tutor, domain) as shown to a reader: cumulative counts, rate and Wilson interval."""

    tutor: str
    domain: str
    opportunities: int
    breaks: int
    rate: float | None
    lower: float
    upper: float


@dataclass(frozen=True)
class Baseline:
    """The counts of one tutor at its last human lift (the automatic rule judges what came after)."""

    step: int
    counts: dict[str, Tally]

    def to_dict(self) -> dict:
        return {"step": self.step, "counts": {d: t.to_dict() for d, t in self.counts.items()}}

    @classmethod
    def from_dict(cls, d: Mapping) -> "Baseline":
        return cls(int(d["step"]), {dom: Tally(**t) for dom, t in d["counts"].items()})


@dataclass(frozen=True)
class TrustState:
    """Break counts per (tutor, domain), the quarantines in force and the rule's settings. Immutable:
    methods return a new state (never mutate the dicts of one)."""

    threshold: float = DEFAULT_THRESHOLD
    z: float = DEFAULT_Z
    auto_quarantine: bool = True
    counts: dict[str, dict[str, Tally]] = field(default_factory=dict)      # tutor -> domain -> tally
    quarantines: dict[str, TrustChange] = field(default_factory=dict)      # tutor -> the change in force
    baselines: dict[str, Baseline] = field(default_factory=dict)           # tutor -> its last human lift

    def __post_init__(self) -> None:
        t = self.threshold
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 <= t <= 1:
            raise ValueError(f"threshold: expected a number in [0, 1], got {t!r}")
        _check_z(self.z)
        if not isinstance(self.auto_quarantine, bool):
            raise ValueError(f"auto_quarantine: expected true or false, got {self.auto_quarantine!r}")

    # --- reading ------------------------------------------------------------------------------------
    def tally(self, tutor: str, domain: str) -> Tally:
        """Cumulative counts of ``tutor`` on ``domain``."""
        return self.counts.get(tutor, {}).get(domain, Tally())

    def window(self, tutor: str, domain: str) -> Tally:
        """The counts the automatic rule judges: cumulative, minus the snapshot of the last human lift."""
        base = self.baselines.get(tutor)
        return self.tally(tutor, domain) - (base.counts.get(domain, Tally()) if base else Tally())

    def interval(self, tutor: str, domain: str) -> tuple[float, float]:
        t = self.tally(tutor, domain)
        return wilson_interval(t.breaks, t.opportunities, self.z)

    def rows(self) -> list[TrustRow]:
        """Every (tutor, domain) with counts, sorted by tutor then domain."""
        out = []
        for tutor in sorted(self.counts):
            for domain in sorted(self.counts[tutor]):
                t = self.counts[tutor][domain]
                lo, hi = wilson_interval(t.breaks, t.opportunities, self.z)
                out.append(TrustRow(tutor, domain, t.opportunities, t.breaks, t.rate, lo, hi))
        return out

    def quarantined(self) -> frozenset[str]:
        """The tutors in quarantine (``routing.route``'s ``quarantined``)."""
        return frozenset(self.quarantines)

    # --- evidence -----------------------------------------------------------------------------------
    def observe(self, tutor: str, domain: str, opportunities: int, breaks: int,
                step: int) -> tuple["TrustState", tuple[TrustChange, ...]]:
        """Add ``breaks`` in ``opportunities`` of ``tutor`` on ``domain``, then apply the automatic rule."""
        _check_counts("observe", opportunities, breaks)
        return self._add({(tutor, domain): Tally(opportunities, breaks)}, step)

    def observe_samples(self, samples: Iterable[Mapping],
                        step: int) -> tuple["TrustState", tuple[TrustChange, ...]]:
        """Add break probes (``BreakEvent`` dicts: ``tutor``, ``domain``, ``correct_without_f``, ``broken``)."""
        groups: dict[tuple[str, str], list[Mapping]] = {}
        for s in samples:
            groups.setdefault((s["tutor"], s["domain"]), []).append(s)
        tallies = {}
        for key, group in groups.items():
            c = break_counts(group)
            tallies[key] = Tally(c["eligible"], c["broken"])
        return self._add(tallies, step)

    def _add(self, tallies: Mapping[tuple[str, str], Tally],
             step: int) -> tuple["TrustState", tuple[TrustChange, ...]]:
        _check_step(step)
        counts = {t: dict(per) for t, per in self.counts.items()}
        for (tutor, domain), tally in tallies.items():
            _check_name("tutor", tutor)
            _check_name("domain", domain)
            per = counts.setdefault(tutor, {})
            per[domain] = per.get(domain, Tally()) + tally
        return replace(self, counts=counts)._apply_rule(step)

    # --- settings -------------------------------------------------------------------------------------
    def reconfigure(self, step: int, *, threshold: float | None = None, z: float | None = None,
                    auto_quarantine: bool | None = None) -> tuple["TrustState", tuple[TrustChange, ...]]:
        """New settings (None: unchanged), then the automatic rule re-applied under them."""
        _check_step(step)
        new = replace(self, threshold=self.threshold if threshold is None else threshold,
                      z=self.z if z is None else z,
                      auto_quarantine=self.auto_quarantine if auto_quarantine is None else auto_quarantine)
        return new._apply_rule(step)

    # --- the automatic rule ---------------------------------------------------------------------------
    def worst(self, tutor: str) -> tuple[str, Tally, float] | None:
        """(domain, window counts, Wilson lower bound) of the domain with the highest lower bound of
        ``tutor``'s window (ties: first domain by name); None without counts."""
        best = None
        for domain in sorted(self.counts.get(tutor, {})):
            w = self.window(tutor, domain)
            lo = wilson_interval(w.breaks, w.opportunities, self.z)[0]
            if best is None or lo > best[2]:
                best = (domain, w, lo)
        return best

    def _apply_rule(self, step: int) -> tuple["TrustState", tuple[TrustChange, ...]]:
        quarantines = dict(self.quarantines)
        changes = []
        for tutor in sorted(set(self.counts) | set(quarantines)):
            current = quarantines.get(tutor)
            if current is not None and current.source == "human":
                continue
            worst = self.worst(tutor)
            over = worst is not None and worst[2] > self.threshold
            if current is None and over and self.auto_quarantine:
                why = f"auto: tutor {tutor!r} breaks too often: {self._evidence(tutor, worst, '>')}"
                change = TrustChange(tutor, "quarantine", "auto", step, why, worst[0])
                quarantines[tutor] = change
            elif current is not None and not self.auto_quarantine:
                change = TrustChange(tutor, "lift", "auto", step, "auto: auto_quarantine turned off")
                del quarantines[tutor]
            elif current is not None and not over:
                why = f"highest: {self._evidence(tutor, worst, '<=')}" if worst else "no counts"
                change = TrustChange(tutor, "lift", "auto", step,
                                     f"auto: tutor {tutor!r} at or below the threshold on every domain; {why}")
                del quarantines[tutor]
            else:
                continue
            changes.append(change)
        return replace(self, quarantines=quarantines), tuple(changes)

    def _evidence(self, tutor: str, worst: tuple[str, Tally, float], cmp: str) -> str:
        domain, w, lo = worst
        rate = "undefined" if w.rate is None else f"{w.rate:.3f}"
        base = self.baselines.get(tutor)
        since = f" since the human lift at step {base.step}" if base else ""
        return (f"on {domain!r} {w.breaks} breaks in {w.opportunities} opportunities{since} (rate {rate}), "
                f"Wilson lower bound {lo:.3f} {cmp} threshold {self.threshold:g} (z={self.z:g})")

    # --- people -----------------------------------------------------------------------------------------
    def quarantine(self, tutor: str, step: int, reason: str = "") -> tuple["TrustState", TrustChange | None]:
        """A person quarantines ``tutor`` (held until a person lifts it); None when it already is, by a
        person. An automatic quarantine becomes a human one."""
        _check_name("tutor", tutor)
        _check_step(step)
        current = self.quarantines.get(tutor)
        if current is not None and current.source == "human":
            return self, None
        why = f"human: {reason or 'quarantined by a person'}"
        if current is not None:
            why += f" (was {current.reason})"
        change = TrustChange(tutor, "quarantine", "human", step, why)
        return replace(self, quarantines={**self.quarantines, tutor: change}), change

    def lift(self, tutor: str, step: int, reason: str = "") -> tuple["TrustState", TrustChange | None]:
        """A person lifts ``tutor``'s quarantine and starts its fresh evidence window (module docstring);
        None (and no new window) when it is not quarantined."""
        _check_name("tutor", tutor)
        _check_step(step)
        current = self.quarantines.get(tutor)
        if current is None:
            return self, None
        change = TrustChange(tutor, "lift", "human", step,
                             f"human: {reason or 'lifted by a person'} (was {current.source}: {current.reason})")
        quarantines = {t: c for t, c in self.quarantines.items() if t != tutor}
        baselines = {**self.baselines, tutor: Baseline(step, dict(self.counts.get(tutor, {})))}
        return replace(self, quarantines=quarantines, baselines=baselines), change

    # --- checkpoints ------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"threshold": self.threshold, "z": self.z, "auto_quarantine": self.auto_quarantine,
                "counts": {t: {d: tally.to_dict() for d, tally in per.items()} for t, per in self.counts.items()},
                "quarantines": {t: c.to_dict() for t, c in self.quarantines.items()},
                "baselines": {t: b.to_dict() for t, b in self.baselines.items()}}

    @classmethod
    def from_dict(cls, d: Mapping) -> "TrustState":
        return cls(threshold=d.get("threshold", DEFAULT_THRESHOLD), z=d.get("z", DEFAULT_Z),
                   auto_quarantine=d.get("auto_quarantine", True),
                   counts={t: {dom: Tally(**tally) for dom, tally in per.items()}
                           for t, per in d.get("counts", {}).items()},
                   quarantines={t: TrustChange.from_dict(c) for t, c in d.get("quarantines", {}).items()},
                   baselines={t: Baseline.from_dict(b) for t, b in d.get("baselines", {}).items()})


def _check_counts(field: str, opportunities: object, breaks: object) -> None:
    for name, v in (("opportunities", opportunities), ("breaks", breaks)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ValueError(f"{field}.{name}: expected an integer >= 0, got {v!r}")
    if breaks > opportunities:
        raise ValueError(f"{field}: {breaks} breaks in {opportunities} opportunities (breaks <= opportunities)")


def _check_z(z: object) -> None:
    if isinstance(z, bool) or not isinstance(z, (int, float)) or not math.isfinite(z) or z <= 0:
        raise ValueError(f"z: expected a finite number > 0, got {z!r}")


def _check_step(step: object) -> None:
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step: expected an integer >= 0, got {step!r}")


def _check_name(field: str, name: object) -> None:
    if not isinstance(name, str) or not name:
        raise ValueError(f"{field}: expected a non-empty name, got {name!r}")
