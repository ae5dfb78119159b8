"""The tutoring-flow matrix of a run: who taught whom, on which domain, how much of it anchoring kept, how
often it broke a right answer, and how the tutee's accuracy moved in the rounds it was taught.

Rows are tutors and columns tutees: the run's students in position order (then any student the run's
config lists beyond its student rows, then any other name the stored rows carry, sorted), any number of
them; a student's own cell appears only if rows tutor it by itself. Each (tutor, tutee) cell is split by
domain (the run's domains, then any other the rows carry).

Whose feedback is whose. An exchange names its own tutor (``exchange.tutor``: with N peers the first routed
tutor, else the first quarantined one that wrote; ``opcod_core.step_routing``), but since migration 0010 it
stores one feedback row per tutor that wrote on its rollout (``feedback.rollout_id``; ``exchange.feedback_id``
is the own tutor's, the primary row): in routing mode ``all`` several tutors' feedback is used on one
rollout, and a quarantined tutor writes in the shadow (``feedback.shadow``: stored and probed, never used).
Every feedback row counts under its own tutor (``feedback.tutor``); exchanges, under the exchange's tutor.
Per (tutor, tutee, domain):

- ``exchanges``: every stored exchange with that (own) tutor, tutee and domain.
- ``feedback``: the tutor's feedback rows on that tutee's rollouts of that domain that were given, i.e. not
  shadow, with an anchoring category (set exactly when the tutor wrote: the exchange list's
  ``category=none`` selects the exchanges without); on its own exchanges (the primary row, whose category the
  exchange repeats) and on other tutors' exchanges (``peer_feedback``: routing mode ``all``). Human-edited
  exchanges (``human_edited``: a person's feedback, made from a stored exchange that is already counted with
  the tutors' own feedback) are left out and counted apart (``human_edited``, under the exchange's tutor).
- ``kept``: of those, the feedback anchoring kept (``category = 'kept'``; ``opcod_core.anchoring``);
  ``kept_rate`` = kept / feedback, None when there is no feedback. ``peer_kept``: the kept of
  ``peer_feedback``.
- ``shadow``: the tutor's shadow feedback rows (written while quarantined, any category), never in
  ``feedback``, ``kept`` or ``kept_rate``. An exchange on which only quarantined tutors wrote names the
  first of them as its tutor and repeats its shadow row's category: it counts in that tutor's
  ``exchanges`` and ``shadow``, not in its ``feedback``.
- Break rate (``opcod_core.breakrate``, with the names of ``opcod_core.trust``): ``probes`` are the
  break-rate probes of the tutor's given feedback on that tutee's questions whose exchange has that domain
  (``break_sample`` keeps the tutor whose feedback was probed; its ``exchange_key`` is joined to the
  exchange's for the domain; probes whose exchange is not stored are counted in ``unattributed_probes``,
  shadow or not); ``opportunities`` = probes right without f (``correct_without_f``), ``breaks`` = those
  wrong once f was added (``broken``), ``break_rate`` = breaks / opportunities, None when there is no
  opportunity. Probes of shadow feedback (``break_sample.shadow``) are counted apart (``shadow_probes``: the
  trust read, ``app.services.trust``, has their rates). Counts are summed, never rates averaged.
- ``rounds``: the rounds with at least one row that counts in ``feedback``.
- ``accuracy_change``: for each of those rounds r, the tutee's accuracy on the domain in the evaluation
  after round r (``eval_result.round = r``) minus the one before it (``round = r - 1``; round 0 is the
  initial evaluation), on the Pareto view's split (``test``), summed over the rounds where both are stored
  (``accuracy_rounds``); None when there are none. With several tutors teaching one tutee in a round, each
  of them is credited with that round's whole change: the changes of a column do not add up.
- Links: the exchange list's ``tutor`` filter matches the exchange's own tutor, so ``exchanges_url`` lists
  the cell's ``exchanges`` and ``kept_url`` its exchanges whose own feedback anchoring kept (category
  ``kept``, not human-edited): ``kept - peer_kept`` of them, plus any exchange where only this quarantined
  tutor wrote and its shadow feedback was kept (counted in ``shadow``). ``feedback_url`` lists the
  ``feedback``: the exchanges, not human-edited, with a feedback row of this tutor that is not shadow (the
  ``feedback_from`` filter), its ``peer_feedback`` on the exchanges other tutors lead included.

Everything is counted by the database (GROUP BY), never by loading exchanges. The exchange counts are read
from the index ``ix_exchange_run_id_flows`` alone, in its order; they count each exchange's primary
feedback row through the category the exchange repeats. A second grouped query (``feedback_rows_query``)
joins the feedback rows to the run's exchanges through ``rollout_id`` and counts what the first cannot
see: the rows beside the primary one, and the primary rows marked shadow, which it takes back out of
their tutor's ``feedback`` and ``kept``. It reads the exchange side from the same index (which ends with
``rollout_id`` and ``feedback_id`` since migration 0011) and tells the rows it counts from the entries of
``ix_feedback_rollout_id_shadow``, visiting only those (none in a run without routing mode ``all`` or
quarantine). The probes join the unique (run, key) index.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from urllib.parse import urlencode

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm import Session

from app.db import session_scope
from app.models import BreakSample, EvalResult, Exchange, Feedback, Run
from app.schemas_flows import FlowCell, FlowDomain, FlowRow, FlowsOut
from app.services import SessionFactory, get_run
from app.services.exchanges import ExchangeFilters
from app.services.reads import domains_of

#: The evaluation split of the accuracy changes: the Pareto view's (``app.services.run_views``).
SPLIT = "test"
EXCHANGES_PATH = "/api/v1/runs/{run_id}/exchanges"

Key = tuple[str, str, str]  # (tutor, tutee, domain)


@dataclass
class _Tally:
    exchanges: int = 0
    feedback: int = 0
    kept: int = 0
    peer_feedback: int = 0
    peer_kept: int = 0
    shadow: int = 0
    human_edited: int = 0
    probes: int = 0
    opportunities: int = 0
    breaks: int = 0
    shadow_probes: int = 0
    given: Counter[int] = field(default_factory=Counter)   # round -> rows counted in ``feedback``

    def rounds(self) -> list[int]:
        return sorted(r for r, n in self.given.items() if n > 0)


def _count(cond):
    return func.sum(case((cond, 1), else_=0))


def exchange_counts_query(run_id: int):
    """Per (tutor, tutee, domain, round): exchanges, tutor feedback, kept feedback, human-edited exchanges."""
    model = Exchange.human_edited.is_(False)
    groups = (Exchange.tutor, Exchange.tutee, Exchange.domain, Exchange.round)
    return (select(*groups, func.count(), _count(and_(Exchange.category.is_not(None), model)),
                   _count(and_(Exchange.category == "kept", model)), _count(Exchange.human_edited.is_(True)))
            .where(Exchange.run_id == run_id).group_by(*groups))


def feedback_rows_query(run_id: int):
    """The feedback rows the exchange counts do not see as they are, per (feedback's tutor, exchange's tutor,
    tutee, domain, round, human-edited, primary, shadow): rows, rows with a category, kept rows. They are
    every tutor's feedback beside the exchange's primary row (routing mode ``all``, shadow writers) and the
    primary rows marked shadow (only quarantined tutors wrote). Human-edited exchanges come back in their own
    groups, which the caller leaves out (as the exchange counts do): a filter on ``human_edited`` would draw
    SQLite to that column's index, away from the covering one."""
    primary = case((Feedback.id == Exchange.feedback_id, True), else_=False)
    groups = (Feedback.tutor, Exchange.tutor, Exchange.tutee, Exchange.domain, Exchange.round, Exchange.human_edited,
              primary, Feedback.shadow)
    return (select(*groups, func.count(), _count(Feedback.category.is_not(None)), _count(Feedback.category == "kept"))
            .join(Feedback, Feedback.rollout_id == Exchange.rollout_id)
            .where(Exchange.run_id == run_id,
                   or_(Exchange.feedback_id.is_(None), Feedback.id != Exchange.feedback_id, Feedback.shadow.is_(True)))
            .group_by(*groups))


def break_counts_query(run_id: int):
    """Per (tutor, tutee, domain of the probed exchange; None when it is not stored, shadow): probes,
    opportunities, breaks."""
    domain = Exchange.domain
    groups = (BreakSample.tutor, BreakSample.tutee, domain, BreakSample.shadow)
    return (select(*groups, func.count(),
                   _count(BreakSample.correct_without_f.is_(True)), _count(BreakSample.broken.is_(True)))
            .outerjoin(Exchange, and_(Exchange.run_id == BreakSample.run_id, Exchange.key == BreakSample.exchange_key))
            .where(BreakSample.run_id == run_id)
            .group_by(*groups))


def _tallies(s: Session, run_id: int) -> tuple[dict[Key, _Tally], int]:
    tallies: dict[Key, _Tally] = defaultdict(_Tally)
    for tutor, tutee, domain, round_, n, feedback, kept, human in s.execute(exchange_counts_query(run_id)):
        t = tallies[(tutor, tutee, domain)]
        t.exchanges += int(n)
        t.feedback += int(feedback or 0)
        t.kept += int(kept or 0)
        t.human_edited += int(human or 0)
        t.given[int(round_)] += int(feedback or 0)
    for tutor, own, tutee, domain, round_, human, primary, shadow, n, written, kept in s.execute(
            feedback_rows_query(run_id)):
        if human:
            continue
        written, kept = int(written or 0), int(kept or 0)
        if shadow:
            tallies[(tutor, tutee, domain)].shadow += int(n)
            if primary:   # counted above through the exchange's category, as if it had been given
                t = tallies[(own, tutee, domain)]
                t.feedback -= written
                t.kept -= kept
                t.given[int(round_)] -= written
            continue
        t = tallies[(tutor, tutee, domain)]
        t.feedback += written
        t.kept += kept
        t.peer_feedback += written
        t.peer_kept += kept
        t.given[int(round_)] += written
    unattributed = 0
    for tutor, tutee, domain, shadow, n, opportunities, breaks in s.execute(break_counts_query(run_id)):
        if domain is None:
            unattributed += int(n)
            continue
        t = tallies[(tutor, tutee, domain)]
        if shadow:
            t.shadow_probes += int(n)
            continue
        t.probes += int(n)
        t.opportunities += int(opportunities or 0)
        t.breaks += int(breaks or 0)
    return tallies, unattributed


def _accuracies(s: Session, run_id: int) -> dict[tuple[str, str, int], float]:
    """(student, domain, round) -> accuracy on ``SPLIT`` (a handful of rows per round)."""
    rows = s.execute(select(EvalResult.student, EvalResult.domain, EvalResult.round, EvalResult.accuracy)
                     .where(EvalResult.run_id == run_id, EvalResult.split == SPLIT))
    return {(st, d, r): acc for st, d, r, acc in rows}


def _ordered(known: list[str], seen: set[str]) -> list[str]:
    names = list(dict.fromkeys(n for n in known if n))
    return names + sorted(seen - set(names))


def _students(run: Run, seen: set[str]) -> list[str]:
    configured = [st.get("name") if isinstance(st, dict) else st for st in (run.config or {}).get("students") or []]
    return _ordered([st.name for st in run.students] + [n for n in configured if isinstance(n, str)], seen)


def _rate(num: int, den: int) -> float | None:
    return num / den if den else None


def _url(run_id: int, **filters) -> str:
    query = ExchangeFilters(**filters).query_items()
    return EXCHANGES_PATH.format(run_id=run_id) + "?" + urlencode(query)


def _domain_cell(run_id: int, key: Key, t: _Tally, acc: dict[tuple[str, str, int], float]) -> FlowDomain:
    tutor, tutee, domain = key
    rounds = t.rounds()
    measured = [r for r in rounds if (tutee, domain, r) in acc and (tutee, domain, r - 1) in acc]
    change = sum(acc[(tutee, domain, r)] - acc[(tutee, domain, r - 1)] for r in measured) if measured else None
    where = {"tutor": tutor, "tutee": tutee, "domain": domain}
    return FlowDomain(
        domain=domain, exchanges=t.exchanges, feedback=t.feedback, kept=t.kept, kept_rate=_rate(t.kept, t.feedback),
        peer_feedback=t.peer_feedback, peer_kept=t.peer_kept, shadow=t.shadow, human_edited=t.human_edited,
        probes=t.probes, opportunities=t.opportunities, breaks=t.breaks, break_rate=_rate(t.breaks, t.opportunities),
        shadow_probes=t.shadow_probes, rounds=rounds, accuracy_change=change,
        accuracy_rounds=measured, exchanges_url=_url(run_id, **where),
        kept_url=_url(run_id, **where, category="kept", human_edited=False),
        feedback_url=_url(run_id, feedback_from=tutor, tutee=tutee, domain=domain, human_edited=False))


def flow_matrix(s: Session, run: Run) -> FlowsOut:
    """The run's matrix (module docstring), read in the caller's unit of work."""
    tallies, unattributed = _tallies(s, run.id)
    acc = _accuracies(s, run.id)
    students = _students(run, {k[0] for k in tallies} | {k[1] for k in tallies})
    domains = _ordered(domains_of(run.config or {}), {k[2] for k in tallies})
    rows = []
    for tutor in students:
        cells = [FlowCell(tutee=tutee, domains=[_domain_cell(run.id, (tutor, tutee, d),
                                                             tallies.get((tutor, tutee, d), _Tally()), acc)
                                                for d in domains])
                 for tutee in students
                 if tutee != tutor or any(k[:2] == (tutor, tutor) for k in tallies)]
        rows.append(FlowRow(tutor=tutor, cells=cells))
    return FlowsOut(run_id=run.id, students=students, domains=domains, split=SPLIT, rows=rows,
                    unattributed_probes=unattributed)


def flows(db: SessionFactory, run_id: int) -> FlowsOut:
    """``GET /runs/{id}/flows``: the tutoring-flow matrix of a run (``NotFound`` for an unknown run)."""
    with session_scope(db) as s:
        return flow_matrix(s, get_run(s, run_id))
