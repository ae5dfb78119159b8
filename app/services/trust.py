"""Tutor trust of a run: each tutor's reputation over time and the periods in which it was quarantined.

Reputation (``opcod_core.trust``, whose docstring has the rule and the Wilson interval; the counts of
``opcod_core.breakrate``): from the run's stored break probes (``break_sample``), per tutor, an
**opportunity** is a probe whose self-teacher was right without the tutor's feedback (``correct_without_f``,
breakrate's eligible) and a **break** an opportunity that the feedback turned wrong (``broken``). At every
global step at which a tutor was probed, its point holds the counts summed over every probe up to and
including that step (cumulative, never averaged rates), the rate breaks / opportunities (None without an
opportunity) and its Wilson interval at the run's ``trust.z`` (``opcod_core.trust.wilson_interval``: (0, 1)
without an opportunity). ``points`` pools every domain; ``domains`` has the same per domain of the tutee's
question, which is what the automatic quarantine judges: a tutor is over the threshold on a domain when that
domain's lower bound exceeds ``trust.threshold`` (strict). Probes of a quarantined tutor's shadow feedback
count like the others (the trainer's evidence does too). These are the displayed, cumulative counts: after a
human lift the trainer's automatic rule judges only the evidence gathered since (``TrustState.window``).

Quarantine periods: the tutor's trust changes (``trust_change``, one per ``trust`` event) in the order they
were recorded. A quarantine opens a period from its ``step`` (the global step from which the feedback is not
used); a lift closes the open one at its ``step`` (the period is [from_step, to_step)); a quarantine while one
is open (a person taking an automatic quarantine over) closes the open period at its step and opens its own;
a period still open has ``to_step`` None. A lift with nothing open changes no period (it is listed in
``changes``).

Recent window (with ``trust.recent`` = W, ``opcod_core.trust``): per (tutor, domain), the last W opportunities
at or after the tutor's last human lift, newest first by (global step, id), which is the order the trainer
added them in; ``recent`` lists their counts and whether their lower bound exceeds the threshold (``over``).

Read with one GROUP BY over the probes (``ix_break_sample_run_id_trust`` covers it) and the run's few
trust-change rows; the settings come from the run's config (``opcod_core.peer_config.TrustConfig``).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm import Session

from app.db import session_scope
from app.models import BreakSample, Run, Step, TrustChange
from app.schemas_trust import (QuarantinePeriod, TrustChangeOut, TrustDomain, TrustOut, TrustPoint, TrustRecent,
                               TutorTrust)
from app.services import SessionFactory, get_run
from app.services.reads import domains_of, student_names
from opcod_core.peer_config import TrustConfig
from opcod_core.trust import Tally, wilson_interval


def _count(cond):
    return func.sum(case((cond, 1), else_=0))


def probe_counts_query(run_id: int):
    """Per (tutor, domain, global step, round): probes, opportunities, breaks, shadow probes."""
    groups = (BreakSample.tutor, BreakSample.domain, BreakSample.global_step, BreakSample.round)
    return (select(*groups, func.count(), _count(BreakSample.correct_without_f.is_(True)),
                   _count(BreakSample.broken.is_(True)), _count(BreakSample.shadow.is_(True)))
            .where(BreakSample.run_id == run_id).group_by(*groups))


def recent_counts_query(run_id: int, window: int, lifts: dict[str, int]):
    """Per (tutor, domain): opportunities and breaks among its last ``window`` opportunities, counting only
    probes at or after the tutor's last human lift (``lifts``: tutor -> step)."""
    where = [BreakSample.run_id == run_id, BreakSample.correct_without_f.is_(True), BreakSample.domain.is_not(None)]
    if lifts:
        where.append(or_(BreakSample.tutor.notin_(list(lifts)),
                         *(and_(BreakSample.tutor == t, BreakSample.global_step >= step) for t, step in lifts.items())))
    rank = func.row_number().over(partition_by=(BreakSample.tutor, BreakSample.domain),
                                  order_by=(BreakSample.global_step.desc(), BreakSample.id.desc())).label("rank")
    newest = select(BreakSample.tutor, BreakSample.domain, BreakSample.broken, rank).where(*where).subquery()
    return (select(newest.c.tutor, newest.c.domain, func.count(), _count(newest.c.broken.is_(True)))
            .where(newest.c.rank <= window).group_by(newest.c.tutor, newest.c.domain))


def _recent(s: Session, run: Run, cfg: TrustConfig, changes: dict[str, list[TrustChange]],
            domains: list[str]) -> dict[str, list[TrustRecent]]:
    """Every tutor's recent window per domain (module docstring); empty without ``trust.recent``."""
    if cfg.recent is None:
        return {}
    last_lift = {t: max(lifted) for t, cs in changes.items()
                 if (lifted := [c.step for c in cs if c.action == "lift" and c.source == "human"])}
    tallies = {(t, d): Tally(int(n), int(k or 0)) for t, d, n, k in
               s.execute(recent_counts_query(run.id, cfg.recent, last_lift))}
    out: dict[str, list[TrustRecent]] = defaultdict(list)
    position = {d: i for i, d in enumerate(domains)}
    for (tutor, domain) in sorted(tallies, key=lambda k: (k[0], position.get(k[1], len(position)), k[1])):
        t = tallies[(tutor, domain)]
        lo = wilson_interval(t.breaks, t.opportunities, cfg.z)[0]
        out[tutor].append(TrustRecent(domain=domain, opportunities=t.opportunities, breaks=t.breaks, rate=t.rate,
                                      lower=lo, over=lo > cfg.threshold))
    return out


def settings_of(run: Run) -> TrustConfig:
    """The run's trust settings (its config's ``trust`` section; the defaults when it has none)."""
    return TrustConfig.model_validate((run.config or {}).get("trust") or {})


class _Step:
    """One tutor's (or (tutor, domain)'s) probes at one global step."""

    __slots__ = ("round", "probes", "tally")

    def __init__(self, round_: int) -> None:
        self.round, self.probes, self.tally = round_, 0, Tally()


def _points(steps: dict[int, _Step], z: float) -> tuple[list[TrustPoint], Tally]:
    """The cumulative points of one series, in step order, and its final counts."""
    total, out = Tally(), []
    for g in sorted(steps):
        st = steps[g]
        total = total + st.tally
        lo, hi = wilson_interval(total.breaks, total.opportunities, z)
        out.append(TrustPoint(global_step=g, round=st.round, probes=st.probes, opportunities=total.opportunities,
                              breaks=total.breaks, rate=total.rate, lower=lo, upper=hi))
    return out, total


def _change_out(c: TrustChange) -> TrustChangeOut:
    return TrustChangeOut(id=c.id, tutor=c.tutor, action=c.action, source=c.source, step=c.step, round=c.round,
                          reason=c.reason, domain=c.domain, override_id=c.override_id, created_at=c.created_at)


def quarantine_periods(changes: Iterable[TrustChange]) -> list[QuarantinePeriod]:
    """One tutor's periods from its changes in recorded order (module docstring)."""
    periods: list[QuarantinePeriod] = []
    open_: QuarantinePeriod | None = None
    for c in changes:
        if c.action == "quarantine":
            if open_ is not None:
                open_.to_step = c.step
            open_ = QuarantinePeriod(from_step=c.step, to_step=None, source=c.source, reason=c.reason,
                                     domain=c.domain, override_id=c.override_id)
            periods.append(open_)
        elif open_ is not None:
            open_.to_step, open_.lift_source, open_.lift_reason = c.step, c.source, c.reason
            open_.lift_override_id = c.override_id
            open_ = None
    return periods


def _ordered(known: list[str], seen: Iterable[str]) -> list[str]:
    names = list(dict.fromkeys(n for n in known if n))
    return names + sorted(set(seen) - set(names))


def trust_view(s: Session, run: Run) -> TrustOut:
    """The run's trust (module docstring), read in the caller's unit of work."""
    cfg = settings_of(run)
    pooled: dict[str, dict[int, _Step]] = defaultdict(dict)
    by_domain: dict[tuple[str, str], dict[int, _Step]] = defaultdict(dict)
    shadow: dict[str, int] = defaultdict(int)
    undomained = 0
    for tutor, domain, g, round_, n, opportunities, breaks, shadows in s.execute(probe_counts_query(run.id)):
        tally = Tally(int(opportunities or 0), int(breaks or 0))
        targets = [pooled[tutor]] + ([by_domain[(tutor, domain)]] if domain is not None else [])
        for series in targets:
            st = series.setdefault(int(g), _Step(int(round_)))
            st.probes += int(n)
            st.tally = st.tally + tally
        shadow[tutor] += int(shadows or 0)
        undomained += int(n) if domain is None else 0
    changes: dict[str, list[TrustChange]] = defaultdict(list)
    for c in s.scalars(select(TrustChange).where(TrustChange.run_id == run.id).order_by(TrustChange.id)):
        changes[c.tutor].append(c)
    domains = _ordered(domains_of(run.config or {}), {d for _, d in by_domain})
    recent = _recent(s, run, cfg, changes, domains)
    tutors = []
    for tutor in _ordered(student_names(run), set(pooled) | set(changes)):
        points, total = _points(pooled.get(tutor, {}), cfg.z)
        lo, hi = wilson_interval(total.breaks, total.opportunities, cfg.z)
        per_domain, over = [], []
        for d in domains:
            if (tutor, d) not in by_domain:
                continue
            dpoints, dtotal = _points(by_domain[(tutor, d)], cfg.z)
            per_domain.append(TrustDomain(domain=d, points=dpoints))
            if wilson_interval(dtotal.breaks, dtotal.opportunities, cfg.z)[0] > cfg.threshold:
                over.append(d)
        periods = quarantine_periods(changes.get(tutor, []))
        tutors.append(TutorTrust(
            tutor=tutor, quarantined=bool(periods) and periods[-1].to_step is None,
            probes=sum(p.probes for p in points), shadow_probes=shadow.get(tutor, 0),
            opportunities=total.opportunities, breaks=total.breaks, rate=total.rate, lower=lo, upper=hi,
            over_threshold=over, recent=recent.get(tutor, []), points=points, domains=per_domain, periods=periods,
            changes=[_change_out(c) for c in changes.get(tutor, [])]))
    last = s.scalar(select(func.max(Step.global_step)).where(Step.run_id == run.id))
    return TrustOut(run_id=run.id, threshold=cfg.threshold, z=cfg.z, auto_quarantine=cfg.auto_quarantine,
                    recent=cfg.recent,
                    students=len(student_names(run)), last_step=last, domains=domains, tutors=tutors,
                    undomained_probes=undomained)


def trust(db: SessionFactory, run_id: int) -> TrustOut:
    """``GET /runs/{id}/trust`` (``NotFound`` for an unknown run)."""
    with session_scope(db) as s:
        return trust_view(s, get_run(s, run_id))
