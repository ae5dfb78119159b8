"""Who may tutor this round: the cognizance gate and the other gating modes (DESIGN section 2, step 1).

Why: a tutor that is far behind its peer on some domain writes feedback that misleads more often than
it helps (the paper's "incognizant tutors break 2.4x as often"). Before each round both students are
evaluated on the *validation* split of every domain; with s*_d = max over students of s^i_d, the
**cognizance gap** of student i is

    Delta_i = sum_d (s*_d - s^i_d) / s*_d

and student i may tutor iff Delta_i <= tau (default tau = 0.2).

Rules of this module:
- Pure functions and frozen records, no torch, no I/O, no environment variables: the trainer calls it,
  the worker stores its records, the dashboard shows them, and tests check the numbers by hand.
- Every record carries every number (scores, s*, Delta, tau) whatever the mode, so a "silent" or
  human-forced decision can always be audited against what the gate would have said.
- A domain where s*_d == 0 contributes 0 to every Delta: nobody knows anything there, so nobody is
  behind (and we never divide by zero).
- The threshold comparison tolerates float noise: Delta <= tau + 1e-9 (a gap computed as
  0.20000000000000004 against tau = 0.2 is "at the threshold", not above it).

Modes:
- ``cognizance`` (default): tutor iff Delta <= tau.
- ``always``: tutor (ablation: no gate).
- ``never``: silent (= SDPO-style self-distillation on own correct rollouts only).
- ``domain_selective``: tutor, but only on prompts of the student's strong domain
  (``allowed_domains = (strong,)``). A student whose strong domain is unknown (None) is silent, with a
  reason saying so: we do not guess a strength from the scores.
- ``manual``: the cognizance decision is computed as the default and recorded with mode "manual";
  whether each exchange's feedback is used is then decided by humans (the trainer waits for them).

Uncertainty (``gap_uncertainty``): the scores are avg@k over a few validation questions, so Delta is
an estimate, and a decision with Delta near tau can be a coin flip. Each record carries standard
errors next to its numbers, computed from the per-question accuracies a^i_{d,j} (correct samples / k
of student i on question j of domain d; both students answer the same n_d questions):

* SE of a domain score: the standard error of a mean over questions,
  SE(s^i_d) = sd_j(a^i_{d,j}) / sqrt(n_d), with the sample standard deviation (n_d - 1). The k
  samples per question are inside a^i_{d,j}, so this covers both question choice and sampling noise
  (questions treated as i.i.d. draws from the domain).
* SE of Delta: a paired bootstrap over questions. Delta is a ratio of maxima of scores (s*_d is a
  max over students), where the delta method's linearisation is poor, especially with few questions
  and scores near 0. So: B = 1000 resamples, each drawing n_d question indices with replacement per
  domain (the same indices for both students, which keeps their correlation), recomputing every
  score, s* and Delta with ``cognizance_gap`` (same zero rule); SE(Delta_i) is the standard deviation
  of the B values of Delta_i. The resampling uses ``Random(f"gate-se-{seed}")``, a fixed seed, so the
  same scores always give the same SE. With fewer than 2 questions in a domain the SEs are None
  (undefined), never 0. The SE is a measure shown to the reader; decisions still compare Delta with tau.

``forced`` holds human run-level overrides (force or mute a tutor). It replaces the decision, sets
``source="human"`` and keeps all numbers. A forced tutor keeps the mode's domain restriction where the
mode has one (domain_selective with a known strong domain); otherwise it may tutor on every domain.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Literal, Mapping, Sequence

from pydantic import BaseModel, ConfigDict

GateMode = Literal["cognizance", "always", "never", "domain_selective", "manual"]
Decision = Literal["tutor", "silent"]
GATE_MODES: tuple[str, ...] = ("cognizance", "always", "never", "domain_selective", "manual")
DECISIONS: tuple[str, ...] = ("tutor", "silent")

#: Tolerance of the Delta <= tau comparison, for float noise only.
EPSILON = 1e-9


class GateRecord(BaseModel):
    """One student's gate decision for one round, with every number that led to it (the ``gate`` event,
    ``opcod_core.events.GateEvent``, is this record plus how it was measured)."""

    model_config = ConfigDict(frozen=True)

    round: int
    student: str
    scores: dict[str, float]
    best: dict[str, float]
    delta: float
    tau: float
    mode: str
    decision: Decision
    source: Literal["auto", "human"] = "auto"
    allowed_domains: tuple[str, ...] | None = None
    reason: str = ""
    delta_se: float | None = None                       # bootstrap SE of delta (module docstring)
    score_se: dict[str, float | None] | None = None     # SE of each domain score (mean over questions)

    def to_dict(self) -> dict:
        """The record's fields as JSON-able values (the trainer's checkpointed state)."""
        d = self.model_dump(include=set(GateRecord.model_fields))
        d["allowed_domains"] = None if self.allowed_domains is None else list(self.allowed_domains)
        return d


def _check_scores(scores: Mapping[str, Mapping[str, float]]) -> list[str]:
    """Validate the score table and return its domains (in first-seen order)."""
    if not scores:
        raise ValueError("scores: at least one student is needed")
    domains: list[str] = []
    for per_domain in scores.values():
        for d in per_domain:
            if d not in domains:
                domains.append(d)
    for student, per_domain in scores.items():
        missing = [d for d in domains if d not in per_domain]
        if missing:
            raise ValueError(f"scores[{student!r}]: missing domain(s) {missing}")
        for d, v in per_domain.items():
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v < 0:
                raise ValueError(f"scores[{student!r}][{d!r}]: expected a finite number >= 0, got {v!r}")
    return domains


def best_scores(scores: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """s*_d = max over students of s^i_d, per domain."""
    domains = _check_scores(scores)
    return {d: float(max(per[d] for per in scores.values())) for d in domains}


def cognizance_gap(scores: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    """Delta_i = sum_d (s*_d - s^i_d) / s*_d for every student i.

    A domain where s*_d == 0 contributes 0: nobody knows anything there, so nobody is behind.
    """
    best = best_scores(scores)
    gaps: dict[str, float] = {}
    for student, per_domain in scores.items():
        gaps[student] = float(sum((best[d] - per_domain[d]) / best[d] for d in best if best[d] > 0))
    return gaps


#: Bootstrap resamples for the SE of Delta.
N_BOOT = 1000


@dataclass(frozen=True)
class GapUncertainty:
    """Standard errors of the gate's numbers (module docstring, "Uncertainty")."""

    score_se: dict[str, dict[str, float | None]]     # student -> domain -> SE of s^i_d
    delta_se: dict[str, float | None]                # student -> bootstrap SE of Delta_i
    n_items: dict[str, int]                          # domain -> questions
    n_boot: int = N_BOOT

    def to_dict(self) -> dict:
        return {"score_se": {s: dict(v) for s, v in self.score_se.items()}, "delta_se": dict(self.delta_se),
                "n_items": dict(self.n_items), "n_boot": self.n_boot}

    @classmethod
    def from_dict(cls, d: Mapping) -> "GapUncertainty":
        return cls({s: dict(v) for s, v in d["score_se"].items()}, dict(d["delta_se"]), dict(d["n_items"]),
                   int(d.get("n_boot", N_BOOT)))


def mean_standard_error(values: Sequence[float]) -> float | None:
    """sd / sqrt(n) with the sample standard deviation (n - 1); None for fewer than 2 values."""
    n = len(values)
    if n < 2:
        return None
    m = sum(values) / n
    return math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1) / n)


def gap_uncertainty(item_scores: Mapping[str, Mapping[str, Sequence[float]]], n_boot: int = N_BOOT,
                    seed: int = 0) -> GapUncertainty:
    """SE of every domain score and bootstrap SE of every Delta from per-question accuracies
    ``item_scores[student][domain] = [a_1, ..., a_n]`` (same questions, same order, for every student)."""
    if n_boot < 2:
        raise ValueError(f"n_boot: expected at least 2, got {n_boot}")
    domains = _check_scores({s: {d: (sum(v) / len(v) if len(v) else 0.0) for d, v in per.items()}
                             for s, per in item_scores.items()})
    n_items: dict[str, int] = {}
    for student, per in item_scores.items():
        for d in domains:
            n = len(per[d])
            if n_items.setdefault(d, n) != n:
                raise ValueError(f"item_scores[{student!r}][{d!r}]: {n} questions, another student has "
                                 f"{n_items[d]}: the bootstrap pairs students on the same questions")
    score_se = {s: {d: mean_standard_error(list(per[d])) for d in domains} for s, per in item_scores.items()}
    if any(n < 2 for n in n_items.values()):
        return GapUncertainty(score_se, {s: None for s in item_scores}, n_items, n_boot)
    rng = random.Random(f"gate-se-{seed}")
    draws: dict[str, list[float]] = {s: [] for s in item_scores}
    for _ in range(n_boot):
        idx = {d: [rng.randrange(n) for _ in range(n)] for d, n in n_items.items()}
        resampled = {s: {d: sum(per[d][j] for j in idx[d]) / n_items[d] for d in domains}
                     for s, per in item_scores.items()}
        for s, gap in cognizance_gap(resampled).items():
            draws[s].append(gap)
    delta_se = {}
    for s, vals in draws.items():
        m = sum(vals) / n_boot
        delta_se[s] = math.sqrt(sum((v - m) ** 2 for v in vals) / (n_boot - 1))
    return GapUncertainty(score_se, delta_se, n_items, n_boot)


def decide_gates(
    round: int,
    scores: Mapping[str, Mapping[str, float]],
    tau: float,
    mode: str,
    strong_domains: Mapping[str, str | None],
    forced: Mapping[str, str] | None = None,
    uncertainty: GapUncertainty | None = None,
) -> dict[str, GateRecord]:
    """Gate every student in ``scores`` for this round under ``mode``; see the module docstring.
    ``uncertainty`` (from ``gap_uncertainty`` on the same evaluation) adds the standard errors."""
    _check_inputs(scores, tau, mode, forced)
    forced = dict(forced or {})
    best = best_scores(scores)
    gaps = cognizance_gap(scores)
    records: dict[str, GateRecord] = {}
    for student, per_domain in scores.items():
        delta = gaps[student]
        within = delta <= tau + EPSILON
        delta_se = uncertainty.delta_se.get(student) if uncertainty is not None else None
        se_text = f" (SE {delta_se:.2f})" if delta_se is not None else ""
        gap_text = f"delta={delta:.4f}{se_text} {'<=' if within else '>'} tau={tau:g}"
        decision, allowed, reason = _mode_decision(mode, within, gap_text, strong_domains.get(student))
        source = "auto"
        if student in forced:
            decision, source = forced[student], "human"
            reason = ("forced to tutor" if decision == "tutor" else "muted") + f" by a human override; {reason}"
            if decision == "silent":
                allowed = None
        records[student] = GateRecord(
            round=round, student=student,
            scores={d: float(v) for d, v in per_domain.items()}, best=dict(best),
            delta=delta, tau=float(tau), mode=mode, decision=decision, source=source,
            allowed_domains=allowed, reason=reason, delta_se=delta_se,
            score_se=dict(uncertainty.score_se[student]) if uncertainty is not None else None,
        )
    return records


def _check_inputs(scores: Mapping[str, Mapping[str, float]], tau: float, mode: str,
                  forced: Mapping[str, str] | None) -> None:
    if mode not in GATE_MODES:
        raise ValueError(f"mode: unknown gating mode {mode!r}; expected one of {list(GATE_MODES)}")
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not math.isfinite(tau):
        raise ValueError(f"tau: expected a finite number, got {tau!r}")
    for student, decision in (forced or {}).items():
        if student not in scores:
            raise ValueError(f"forced[{student!r}]: unknown student; expected one of {list(scores)}")
        if decision not in DECISIONS:
            raise ValueError(f"forced[{student!r}]: expected 'tutor' or 'silent', got {decision!r}")


def _mode_decision(mode: str, within: bool, gap_text: str,
                   strong: str | None) -> tuple[Decision, tuple[str, ...] | None, str]:
    """(decision, domains it may tutor on (None: all), reason) of one student under ``mode``."""
    if mode == "cognizance":
        return ("tutor" if within else "silent"), None, f"cognizance: {gap_text}"
    if mode == "always":
        return "tutor", None, "always: gate disabled"
    if mode == "never":
        return "silent", None, "never: self-distillation only, no peer feedback"
    if mode == "domain_selective":
        if strong is None:
            return "silent", None, "domain_selective: strong domain unknown"
        return "tutor", (strong,), f"domain_selective: tutors on {strong!r} only"
    return ("tutor" if within else "silent"), None, \
        f"manual: default from cognizance ({gap_text}); feedback awaits human approval"


def tutor_allowed(record: GateRecord, prompt_domain: str) -> bool:
    """May this record's student write feedback on a prompt of ``prompt_domain``?"""
    if record.decision != "tutor":
        return False
    return record.allowed_domains is None or prompt_domain in record.allowed_domains
