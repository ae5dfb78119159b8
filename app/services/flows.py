"""The tutoring-flow matrix of a run: who taught whom, on which domain, how much of it anchoring kept, how
often it broke a right answer, and how the tutee's accuracy moved in the rounds it was taught.

Rows are tutors and columns tutees: the run's students in position order (then any student the run's
config lists beyond its student rows, then any other name the stored rows carry, sorted), any number of
them; a student's own cell appears only if rows tutor it by itself. Each (tutor, tutee) cell is split by
domain (the run's domains, then any other the rows carry). Per (tutor, tutee, domain):

- ``exchanges``: every stored exchange with that tutor, tutee and domain.
- ``feedback``: those that carry the tutor's feedback, i.e. an anchoring category (``category`` is set
  exactly when the tutor wrote feedback: the exchange list's ``category=none`` selects the others).
  Human-edited exchanges (``human_edited``: a person's feedback, made from a stored exchange that is
  already counted with the tutor's own feedback) are left out and counted apart (``human_edited``).
- ``kept``: of those, the feedback anchoring kept (``category = 'kept'``; ``opcod_core.anchoring``);
  ``kept_rate`` = kept / feedback, None when there is no feedback.
- Break rate (``opcod_core.breakrate``, with the names of ``opcod_core.trust``): ``probes`` are the
  break-rate probes of that tutor and tutee whose exchange has that domain (``break_sample`` keeps no
  domain: its ``exchange_key`` is joined to the exchange's; probes whose exchange is not stored are
  counted in ``unattributed_probes``); ``opportunities`` = probes right without f (``correct_without_f``),
  ``breaks`` = those wrong once f was added (``broken``), ``break_rate`` = breaks / opportunities, None
  when there is no opportunity. Counts are summed, never rates averaged.
- ``rounds``: the rounds with at least one exchange that counts in ``feedback``.
- ``accuracy_change``: for each of those rounds r, the tutee's accuracy on the domain in the evaluation
  after round r (``eval_result.round = r``) minus the one before it (``round = r - 1``; round 0 is the
  initial evaluation), on the Pareto view's split (``test``), summed over the rounds where both are stored
  (``accuracy_rounds``); None when there are none. With several tutors teaching one tutee in a round, each
  of them is credited with that round's whole change: the changes of a column do not add up.
- ``exchanges_url`` lists the cell's exchanges, ``kept_url`` exactly the ``kept`` ones.

Everything is counted by the database (GROUP BY), never by loading exchanges: the exchange counts are read
from the index ``ix_exchange_run_id_flows`` alone, in its order; the probes join the unique (run, key) index.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from urllib.parse import urlencode

from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session

from app.db import session_scope
from app.models import BreakSample, EvalResult, Exchange, Run
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
    human_edited: int = 0
    probes: int = 0
    opportunities: int = 0
    breaks: int = 0
    rounds: set[int] = field(default_factory=set)


def _count(cond):
    return func.sum(case((cond, 1), else_=0))


def exchange_counts_query(run_id: int):
    """Per (tutor, tutee, domain, round): exchanges, tutor feedback, kept feedback, human-edited exchanges."""
    model = Exchange.human_edited.is_(False)
    groups = (Exchange.tutor, Exchange.tutee, Exchange.domain, Exchange.round)
    return (select(*groups, func.count(), _count(and_(Exchange.category.is_not(None), model)),
                   _count(and_(Exchange.category == "kept", model)), _count(Exchange.human_edited.is_(True)))
            .where(Exchange.run_id == run_id).group_by(*groups))


def break_counts_query(run_id: int):
    """Per (tutor, tutee, domain of the probed exchange; None when it is not stored): probes,
    opportunities, breaks."""
    domain = Exchange.domain
    return (select(BreakSample.tutor, BreakSample.tutee, domain, func.count(),
                   _count(BreakSample.correct_without_f.is_(True)), _count(BreakSample.broken.is_(True)))
            .outerjoin(Exchange, and_(Exchange.run_id == BreakSample.run_id, Exchange.key == BreakSample.exchange_key))
            .where(BreakSample.run_id == run_id)
            .group_by(BreakSample.tutor, BreakSample.tutee, domain))


def _tallies(s: Session, run_id: int) -> tuple[dict[Key, _Tally], int]:
    tallies: dict[Key, _Tally] = defaultdict(_Tally)
    for tutor, tutee, domain, round_, n, feedback, kept, human in s.execute(exchange_counts_query(run_id)):
        t = tallies[(tutor, tutee, domain)]
        t.exchanges += int(n)
        t.feedback += int(feedback or 0)
        t.kept += int(kept or 0)
        t.human_edited += int(human or 0)
        if feedback:
            t.rounds.add(int(round_))
    unattributed = 0
    for tutor, tutee, domain, n, opportunities, breaks in s.execute(break_counts_query(run_id)):
        if domain is None:
            unattributed += int(n)
            continue
        t = tallies[(tutor, tutee, domain)]
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
    rounds = sorted(t.rounds)
    measured = [r for r in rounds if (tutee, domain, r) in acc and (tutee, domain, r - 1) in acc]
    change = sum(acc[(tutee, domain, r)] - acc[(tutee, domain, r - 1)] for r in measured) if measured else None
    where = {"tutor": tutor, "tutee": tutee, "domain": domain}
    return FlowDomain(
        domain=domain, exchanges=t.exchanges, feedback=t.feedback, kept=t.kept, kept_rate=_rate(t.kept, t.feedback),
        human_edited=t.human_edited, probes=t.probes, opportunities=t.opportunities, breaks=t.breaks,
        break_rate=_rate(t.breaks, t.opportunities), rounds=rounds, accuracy_change=change,
        accuracy_rounds=measured, exchanges_url=_url(run_id, **where),
        kept_url=_url(run_id, **where, category="kept", human_edited=False))


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
