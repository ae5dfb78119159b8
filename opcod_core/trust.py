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

Wilson score interval: ``opcod_core.wilson`` (its docstring has the formula and a worked example).

Quarantine rule (``auto_quarantine`` on, the default). A tutor is quarantined automatically when the
Wilson LOWER bound of its break rate on some domain exceeds ``threshold`` (default 0.5, strict >): we
are confident (at level z) that it breaks more often than the threshold there. The reason names the
tutor, the domain with the highest lower bound, the counts, the rate and the bound. An automatic
quarantine is lifted automatically once the lower bound is at or below the threshold on every domain
(the rule is re-applied after every update). With ``auto_quarantine`` off nothing is quarantined
automatically (turning it off lifts the automatic quarantines in force), and counts and intervals are
still tracked.

Recent window (``recent``, off by default). The counts of a whole run are slow to notice a tutor that
turns bad after a clean record: its early opportunities hold the bound down long after its feedback
went wrong (docs/results/n-peers.md: a poisoned tutor broke 31 of 33 chemistry opportunities and stayed
at a lower bound of 0.28 over its 82). With ``recent`` = W the rule also judges, per (tutor, domain), its
last W opportunities alone (counted since its last human lift, like the window below), and a tutor is
over the threshold on a domain when EITHER lower bound exceeds it; it is lifted automatically when both
are at or below it on every domain. The last W outcomes are kept in the order the probes were added
(``observe_samples``: the caller's order); an aggregate ``observe`` adds its breaks first, then its other
opportunities, so a window that cuts through one aggregate keeps its non-breaks (the conservative side).
The outcomes are kept only while ``recent`` is set: a window set or widened mid-run starts from the
outcomes it holds (none, or the last W of the narrower one). At z = 1.96 and threshold 0.5, W = 20 takes
15 breaks in the last 20 opportunities.

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

from dataclasses import dataclass, field, replace
from typing import Iterable, Literal, Mapping

from opcod_core.breakrate import break_counts
from opcod_core.wilson import DEFAULT_Z, Tally, check_counts as _check_counts, check_z as _check_z, wilson_interval

Action = Literal["quarantine", "lift"]
Source = Literal["auto", "human"]
DEFAULT_THRESHOLD = 0.5


class Unchanged:
    """The type of ``UNCHANGED``: a setting ``reconfigure`` leaves as it is (where None means "off")."""


UNCHANGED = Unchanged()


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
    recent: int | None = None                                               # W of the recent window; None: off
    history: dict[str, dict[str, tuple[bool, ...]]] = field(default_factory=dict)  # tutor -> domain -> last W

    def __post_init__(self) -> None:
        t = self.threshold
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 <= t <= 1:
            raise ValueError(f"threshold: expected a number in [0, 1], got {t!r}")
        _check_z(self.z)
        if not isinstance(self.auto_quarantine, bool):
            raise ValueError(f"auto_quarantine: expected true or false, got {self.auto_quarantine!r}")
        _check_recent(self.recent)

    # --- reading ------------------------------------------------------------------------------------
    def tally(self, tutor: str, domain: str) -> Tally:
        """Cumulative counts of ``tutor`` on ``domain``."""
        return self.counts.get(tutor, {}).get(domain, Tally())

    def window(self, tutor: str, domain: str) -> Tally:
        """The counts the automatic rule judges: cumulative, minus the snapshot of the last human lift."""
        base = self.baselines.get(tutor)
        return self.tally(tutor, domain) - (base.counts.get(domain, Tally()) if base else Tally())

    def recent_window(self, tutor: str, domain: str) -> Tally:
        """The counts of the last ``recent`` opportunities (module docstring); empty when ``recent`` is off."""
        outcomes = self.history.get(tutor, {}).get(domain, ())
        return Tally(len(outcomes), sum(outcomes))

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
        outcomes = (True,) * breaks + (False,) * (opportunities - breaks)
        return self._add({(tutor, domain): Tally(opportunities, breaks)}, step, {(tutor, domain): outcomes})

    def observe_samples(self, samples: Iterable[Mapping],
                        step: int) -> tuple["TrustState", tuple[TrustChange, ...]]:
        """Add break probes (``BreakEvent`` dicts: ``tutor``, ``domain``, ``correct_without_f``, ``broken``)."""
        groups: dict[tuple[str, str], list[Mapping]] = {}
        for s in samples:
            groups.setdefault((s["tutor"], s["domain"]), []).append(s)
        tallies, outcomes = {}, {}
        for key, group in groups.items():
            c = break_counts(group)
            tallies[key] = Tally(c["eligible"], c["broken"])
            outcomes[key] = tuple(bool(s["broken"]) for s in group if s["correct_without_f"])
        return self._add(tallies, step, outcomes)

    def _add(self, tallies: Mapping[tuple[str, str], Tally], step: int,
             outcomes: Mapping[tuple[str, str], tuple[bool, ...]]) -> tuple["TrustState", tuple[TrustChange, ...]]:
        _check_step(step)
        counts = {t: dict(per) for t, per in self.counts.items()}
        history = {t: dict(per) for t, per in self.history.items()}
        for (tutor, domain), tally in tallies.items():
            _check_name("tutor", tutor)
            _check_name("domain", domain)
            per = counts.setdefault(tutor, {})
            per[domain] = per.get(domain, Tally()) + tally
            if self.recent is not None:
                held = history.setdefault(tutor, {})
                held[domain] = (held.get(domain, ()) + outcomes[(tutor, domain)])[-self.recent:]
        return replace(self, counts=counts, history=history)._apply_rule(step)

    # --- settings -------------------------------------------------------------------------------------
    def reconfigure(self, step: int, *, threshold: float | None = None, z: float | None = None,
                    auto_quarantine: bool | None = None,
                    recent: int | None | Unchanged = UNCHANGED) -> tuple["TrustState", tuple[TrustChange, ...]]:
        """New settings (None, or for ``recent`` UNCHANGED: unchanged; ``recent=None`` turns the window off),
        then the automatic rule re-applied under them."""
        _check_step(step)
        window = self.recent if recent is UNCHANGED else recent
        _check_recent(window)
        history = {} if window is None else {t: {d: o[-window:] for d, o in per.items()}
                                             for t, per in self.history.items()}
        new = replace(self, threshold=self.threshold if threshold is None else threshold,
                      z=self.z if z is None else z,
                      auto_quarantine=self.auto_quarantine if auto_quarantine is None else auto_quarantine,
                      recent=window, history=history)
        return new._apply_rule(step)

    # --- the automatic rule ---------------------------------------------------------------------------
    def worst(self, tutor: str) -> tuple[str, Tally, float, bool] | None:
        """(domain, counts, Wilson lower bound, whether the counts are the recent window) of the highest
        lower bound of ``tutor``'s evidence: its since-lift window on every domain and, with ``recent``
        set, its recent window (ties: first domain by name, the since-lift window first); None without
        counts."""
        best = None
        for domain in sorted(self.counts.get(tutor, {})):
            candidates = [(self.window(tutor, domain), False)]
            if self.recent is not None:
                candidates.append((self.recent_window(tutor, domain), True))
            for w, is_recent in candidates:
                lo = wilson_interval(w.breaks, w.opportunities, self.z)[0]
                if best is None or lo > best[2]:
                    best = (domain, w, lo, is_recent)
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

    def _evidence(self, tutor: str, worst: tuple[str, Tally, float, bool], cmp: str) -> str:
        domain, w, lo, is_recent = worst
        rate = "undefined" if w.rate is None else f"{w.rate:.3f}"
        base = self.baselines.get(tutor)
        since = f" since the human lift at step {base.step}" if base else ""
        last = f" in its last {self.recent} opportunities" if is_recent else ""
        return (f"on {domain!r} {w.breaks} breaks in {w.opportunities} opportunities{last}{since} (rate {rate}), "
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
        history = {t: per for t, per in self.history.items() if t != tutor}    # its recent window starts afresh
        return replace(self, quarantines=quarantines, baselines=baselines, history=history), change

    # --- checkpoints ------------------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {"threshold": self.threshold, "z": self.z, "auto_quarantine": self.auto_quarantine,
                "counts": {t: {d: tally.to_dict() for d, tally in per.items()} for t, per in self.counts.items()},
                "quarantines": {t: c.to_dict() for t, c in self.quarantines.items()},
                "baselines": {t: b.to_dict() for t, b in self.baselines.items()},
                "recent": self.recent,
                "history": {t: {d: [int(o) for o in outcomes] for d, outcomes in per.items()}
                            for t, per in self.history.items()}}

    @classmethod
    def from_dict(cls, d: Mapping) -> "TrustState":
        return cls(threshold=d.get("threshold", DEFAULT_THRESHOLD), z=d.get("z", DEFAULT_Z),
                   auto_quarantine=d.get("auto_quarantine", True),
                   counts={t: {dom: Tally(**tally) for dom, tally in per.items()}
                           for t, per in d.get("counts", {}).items()},
                   quarantines={t: TrustChange.from_dict(c) for t, c in d.get("quarantines", {}).items()},
                   baselines={t: Baseline.from_dict(b) for t, b in d.get("baselines", {}).items()},
                   recent=d.get("recent"),
                   history={t: {dom: tuple(bool(o) for o in outcomes) for dom, outcomes in per.items()}
                            for t, per in d.get("history", {}).items()})


def _check_recent(recent: object) -> None:
    if recent is not None and (isinstance(recent, bool) or not isinstance(recent, int) or recent < 1):
        raise ValueError(f"recent: expected a whole number of opportunities >= 1, or none, got {recent!r}")


def _check_step(step: object) -> None:
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"step: expected an integer >= 0, got {step!r}")


def _check_name(field: str, name: object) -> None:
    if not isinstance(name, str) or not name:
        raise ValueError(f"{field}: expected a non-empty name, got {name!r}")
