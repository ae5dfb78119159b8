"""Tutor routing among N peers (2 to 8): who writes the feedback a tutee's question gets, and in which
order a round's directions run.

With two students the tutor of a direction is simply "the other one". With N specialists a tutee has up
to N - 1 possible tutors, so each question is *routed*. Rules of this module (pure functions and frozen
records like ``gating``: no torch, no I/O, no environment variables):

Inputs.
- ``peers``: the peer names in the run's fixed order (``config.students``): 2 to 8 unique non-empty
  names. The tutee must be one of them.
- ``cognizant``: the peers allowed to tutor on this question's domain this round. The gate is *not*
  recomputed here: the caller passes the peers p with ``gating.tutor_allowed(records[p], domain)``
  (Delta_p <= tau in mode ``cognizance``, every human override and domain restriction included).
- ``scores``: validation score per peer per domain (``scores[name][domain]``, the gate's s^i_d). Read
  only by ``best`` and ``all``, and only for the candidates.
- ``seed`` (the run seed), ``round``, ``index`` (a per-question counter, e.g. the question's position in
  the step's batch, used by ``round_robin``).
- ``quarantined``: tutors whose feedback must not be used (``opcod_core.trust``).

Candidates are the cognizant peers other than the tutee, in the fixed peer order.

Modes.
- ``best`` (default): the candidate with the highest validation score on the question's domain.
- ``round_robin``: candidate number ``index mod c`` (c candidates, fixed peer order): consecutive
  questions rotate through the candidates.
- ``all``: every candidate, best score first, at most ``max_tutors`` of them (None: no cap).

Ties. Equal scores (exact float equality: the scores are avg@k fractions computed the same way for
every peer) are ordered by ``tie_key(seed, round, tutee, domain, peer)``, the sha256 of those values:
a pure function of them, the same in every process and on every resume (never Python's ``hash()``,
which is salted per process), and different for another seed, round, tutee or domain, so no peer is
always favoured.

Quarantine ("generate but do not use"). The mode selects twice: once among all candidates as if nobody
were quarantined, once among the candidates that are not quarantined. ``tutors`` is the second
selection: the feedback that is used. ``quarantined`` is the quarantined part of the first selection:
the peers that would have tutored had they not been quarantined. The caller still has them generate
feedback and stores it, marked unused, so a person can read what they would have said and the break
probe keeps measuring them (the only way new evidence can lift an automatic quarantine), but that
feedback never enters a self-teacher context. So quarantining the best tutor hands the question to
the next best one, and the quarantined one writes in the shadow.

No tutor. With no candidate (no cognizant peer other than the tutee), or every candidate quarantined,
``tutors`` is empty and ``reason`` says why: the caller trains the tutee without peer feedback on that
question, as a silent gate does today.

Round schedule (``round_tutees``). A round has one direction per peer as tutee, in the fixed peer order.
With ``tutor_first`` the directions whose tutee has at least one cognizant peer other than itself run
first (a stable partition: the fixed order is kept inside each part). For two peers this is exactly
today's schedule (``Trainer._direction_order``): [1, 2], or [2, 1] when only student 1 may tutor.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Collection, Literal, Mapping, Sequence

RoutingMode = Literal["best", "round_robin", "all"]
ROUTING_MODES: tuple[str, ...] = ("best", "round_robin", "all")
MIN_PEERS, MAX_PEERS = 2, 8


@dataclass(frozen=True)
class Route:
    """Who tutors one question of ``tutee`` on ``domain`` (module docstring)."""

    tutee: str
    domain: str
    tutors: tuple[str, ...]                 # their feedback is used, in this order
    quarantined: tuple[str, ...] = ()       # generate but do not use
    mode: str = "best"
    reason: str = ""

    def to_dict(self) -> dict:
        return {"tutee": self.tutee, "domain": self.domain, "tutors": list(self.tutors),
                "quarantined": list(self.quarantined), "mode": self.mode, "reason": self.reason}

    @classmethod
    def from_dict(cls, d: Mapping) -> "Route":
        return cls(d["tutee"], d["domain"], tuple(d["tutors"]), tuple(d.get("quarantined", ())),
                   d.get("mode", "best"), d.get("reason", ""))


def check_peers(peers: Sequence[str]) -> tuple[str, ...]:
    """The peer names as a tuple, after checking there are 2 to 8 unique non-empty names."""
    if isinstance(peers, str):
        raise ValueError(f"peers: expected a sequence of names, got the string {peers!r}")
    names = tuple(peers)
    if not MIN_PEERS <= len(names) <= MAX_PEERS:
        raise ValueError(f"peers: expected {MIN_PEERS} to {MAX_PEERS} peers, got {len(names)}")
    for i, name in enumerate(names):
        if not isinstance(name, str) or not name:
            raise ValueError(f"peers[{i}]: expected a non-empty name, got {name!r}")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"peers: duplicate name(s) {duplicates}")
    return names


def tie_key(seed: int, round: int, tutee: str, domain: str, peer: str) -> str:
    """The seeded tie-break key of ``peer`` (smaller first): sha256 of the JSON list of the inputs."""
    payload = json.dumps(["opcod-route", seed, round, tutee, domain, peer])
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def rank_tutors(candidates: Sequence[str], scores: Mapping[str, Mapping[str, float]], domain: str, *,
                seed: int, round: int, tutee: str) -> list[str]:
    """``candidates`` by validation score on ``domain``, best first; equal scores in ``tie_key`` order."""
    for p in candidates:
        _score(scores, p, domain)
    return sorted(candidates, key=lambda p: (-_score(scores, p, domain), tie_key(seed, round, tutee, domain, p)))


def route(peers: Sequence[str], tutee: str, domain: str, cognizant: Collection[str],
          scores: Mapping[str, Mapping[str, float]], *, seed: int, round: int, index: int = 0,
          mode: str = "best", max_tutors: int | None = None, quarantined: Collection[str] = ()) -> Route:
    """Route one question of ``tutee`` on ``domain`` under ``mode`` (module docstring)."""
    names = check_peers(peers)
    if tutee not in names:
        raise ValueError(f"tutee: {tutee!r} is not a peer; expected one of {list(names)}")
    if mode not in ROUTING_MODES:
        raise ValueError(f"mode: unknown routing mode {mode!r}; expected one of {list(ROUTING_MODES)}")
    cog = _check_subset("cognizant", cognizant, names)
    held = _check_subset("quarantined", quarantined, names)
    _check_int("seed", seed)
    _check_int("round", round)
    _check_int("index", index, minimum=0)
    if max_tutors is not None:
        _check_int("max_tutors", max_tutors, minimum=1)
    candidates = [p for p in names if p in cog and p != tutee]
    if not candidates:
        return Route(tutee, domain, (), (), mode,
                     f"no cognizant peer other than {tutee!r} (cognizant: {[p for p in names if p in cog]}); "
                     "no peer feedback")
    usable = [p for p in candidates if p not in held]
    pick = _Picker(mode, scores, domain, seed, round, tutee, index, max_tutors)
    shadow = tuple(p for p in pick(candidates) if p in held)
    tutors = pick(usable) if usable else ()
    if not tutors:
        reason = f"every cognizant peer other than {tutee!r} is quarantined: {list(shadow)}; no peer feedback"
    else:
        reason = pick.explain(usable, tutors)
    if shadow and tutors:
        reason += f"; quarantined, feedback generated but not used: {list(shadow)}"
    return Route(tutee, domain, tutors, shadow, mode, reason)


@dataclass(frozen=True)
class _Picker:
    """One mode's selection among some candidates (the same rule for the shadow and the real pick)."""

    mode: str
    scores: Mapping[str, Mapping[str, float]]
    domain: str
    seed: int
    round: int
    tutee: str
    index: int
    max_tutors: int | None

    def _ranked(self, candidates: Sequence[str]) -> list[str]:
        return rank_tutors(candidates, self.scores, self.domain, seed=self.seed, round=self.round, tutee=self.tutee)

    def __call__(self, candidates: Sequence[str]) -> tuple[str, ...]:
        if self.mode == "round_robin":
            return (candidates[self.index % len(candidates)],)
        ranked = self._ranked(candidates)
        cap = 1 if self.mode == "best" else (self.max_tutors or len(ranked))
        return tuple(ranked[:cap])

    def explain(self, usable: Sequence[str], chosen: tuple[str, ...]) -> str:
        if self.mode == "round_robin":
            return (f"round_robin: question {self.index} -> {chosen[0]!r} "
                    f"(position {self.index % len(usable)} of {list(usable)})")
        ranked = self._ranked(usable)
        values = {p: _score(self.scores, p, self.domain) for p in ranked}
        boundary = ranked[:len(chosen) + 1]
        tied = any(values[a] == values[b] for a, b in zip(boundary, boundary[1:]))
        tie = f"; equal scores ordered by seed {self.seed}" if tied else ""
        shown = ", ".join(f"{p}={values[p]:g}" for p in ranked)
        if self.mode == "best":
            return (f"best: {chosen[0]!r} has the highest validation score on {self.domain!r} "
                    f"among the usable cognizant peers ({shown}){tie}")
        cap = "" if self.max_tutors is None else f", max_tutors={self.max_tutors}"
        return f"all: {list(chosen)} by validation score on {self.domain!r} ({shown}{cap}){tie}"


def round_tutees(peers: Sequence[str], cognizant: Collection[str] = (), tutor_first: bool = False) -> list[str]:
    """The tutees of a round's directions in the order they run (module docstring, "Round schedule")."""
    names = check_peers(peers)
    cog = _check_subset("cognizant", cognizant, names)
    if not tutor_first:
        return list(names)
    served = [p for p in names if any(c != p for c in cog)]
    return served + [p for p in names if p not in served]


def direction_numbers(peers: Sequence[str], tutees: Sequence[str]) -> list[int]:
    """Tutee names as the trainer's direction numbers (direction i: the i-th peer, 1-based, is tutee)."""
    names = check_peers(peers)
    for t in tutees:
        if t not in names:
            raise ValueError(f"tutees: {t!r} is not a peer; expected one of {list(names)}")
    return [names.index(t) + 1 for t in tutees]


def _score(scores: Mapping[str, Mapping[str, float]], peer: str, domain: str) -> float:
    try:
        v = scores[peer][domain]
    except KeyError:
        raise ValueError(f"scores[{peer!r}][{domain!r}]: missing validation score") from None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        raise ValueError(f"scores[{peer!r}][{domain!r}]: expected a finite number, got {v!r}")
    return float(v)


def _check_subset(field: str, values: Collection[str], names: tuple[str, ...]) -> frozenset[str]:
    if isinstance(values, str):
        raise ValueError(f"{field}: expected a collection of peer names, got the string {values!r}")
    unknown = sorted(str(v) for v in values if v not in names)
    if unknown:
        raise ValueError(f"{field}: unknown peer(s) {unknown}; expected names from {list(names)}")
    return frozenset(values)


def _check_int(field: str, value: object, minimum: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{field}: expected an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{field}: expected at least {minimum}, got {value}")
