"""Compare runs that share students: does a student gain more among N peers than in a pair?

Issue 17 runs N specialists together; the question a researcher asks next is whether a student did
better in the N-student run than in the pairwise runs of the same students. Runs are compared student by
student: two runs share a student when the student has the same name, model and strong domain in both
(a "chem" on another model is another student). For each shared student and each domain either run
measured, every compared run has a cell: the student's test-accuracy change over that run (the last
evaluation minus the one before training, round 0), or nothing when the run does not hold the student,
did not evaluate that domain, or has no evaluation before or after training yet. Absent is never zero.

The reference column is the run with the most students (the first such on ties): the N-student run
when a trio is compared with its pairs. Plain data from rows the caller already read; the compare
presenter (``app.web.peer_charts``) draws it.
"""

from __future__ import annotations

from typing import Any, Iterable

from app.models import EvalResult, Run
from app.services.reads import domains_of

Identity = tuple[str, str, str | None]   # (name, model, strong domain)


def _test_scores(evals: Iterable[EvalResult]) -> dict[tuple[str, str], dict[int, float]]:
    """(student, domain) -> round -> test accuracy (the newest row of a round wins)."""
    out: dict[tuple[str, str], dict[int, float]] = {}
    for e in sorted(evals, key=lambda e: e.id or 0):
        if e.split == "test":
            out.setdefault((e.student, e.domain), {})[e.round] = e.accuracy
    return out


def change_of(by_round: dict[int, float] | None) -> dict[str, Any]:
    """The change of one student on one domain over a run: its last evaluation minus the one before
    training (round 0); ``change`` is None without both."""
    by = by_round or {}
    last_round = max(by) if by else None
    initial, last = by.get(0), (by[last_round] if by else None)
    change = last - initial if initial is not None and last_round else None
    return {"initial": initial, "last": last, "last_round": last_round, "change": change}


def _cell(run: Run, held: bool, domains: list[str], scores, name: str, domain: str) -> dict[str, Any]:
    if not held:
        return {"run_id": run.id, "state": "not_in_run", "initial": None, "last": None, "last_round": None,
                "change": None}
    if domain not in domains:
        return {"run_id": run.id, "state": "not_evaluated", "initial": None, "last": None, "last_round": None,
                "change": None}
    c = change_of(scores.get((name, domain)))
    return {"run_id": run.id, "state": "measured" if c["change"] is not None else "pending", **c}


def shared_students(runs: list[Run], evals_by: dict[int, list[EvalResult]]) -> dict[str, Any]:
    """Every student held by two or more of ``runs`` (name, model and strong domain alike), with its
    accuracy change per domain in each run, the reference run first. ``not_shared`` lists the others."""
    if not runs:
        return {"reference": None, "runs": [], "students": [], "not_shared": []}
    reference = max(runs, key=lambda r: (len(r.students), -runs.index(r)))
    order = [reference] + [r for r in runs if r is not reference]
    holders: dict[Identity, list[Run]] = {}
    for run in order:
        for st in run.students:
            holders.setdefault((st.name, st.model_ref, st.strong_domain), []).append(run)
    scores = {run.id: _test_scores(evals_by.get(run.id, [])) for run in order}
    domains = {run.id: domains_of(run.config or {}) for run in order}
    students, not_shared = [], []
    for ident, held in holders.items():
        name, model, strong = ident
        entry = {"name": name, "model": model, "strong_domain": strong, "runs": [r.id for r in held]}
        if len(held) < 2:
            not_shared.append(entry)
            continue
        doms = list(dict.fromkeys(d for r in held for d in domains[r.id]))
        entry["domains"] = [{"domain": d, "cells": [_cell(r, r in held, domains[r.id], scores[r.id], name, d)
                                                    for r in order]} for d in doms]
        students.append(entry)
    return {"reference": reference.id,
            "runs": [{"id": r.id, "name": r.name, "students": [st.name for st in r.students]} for r in order],
            "students": students, "not_shared": not_shared}
