"""Gate records, evaluations and metric series of a run."""

from __future__ import annotations

from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from app.db import session_scope
from app.models import BreakSample, EvalResult, GateRecord, Metric
from app.schemas import EvalOut, GateOut, MetricsOut
from app.services import SessionFactory, get_run

MAX_KEYS = 50


def gates(db: SessionFactory, run_id: int, round_: int | None = None) -> list[GateOut]:
    with session_scope(db) as s:
        get_run(s, run_id)
        q = select(GateRecord).where(GateRecord.run_id == run_id)
        if round_ is not None:
            q = q.where(GateRecord.round == round_)
        return [GateOut.model_validate(g) for g in s.scalars(q.order_by(GateRecord.round, GateRecord.id))]


def _counts(samples: int, eligible: int, broken: int) -> dict[str, Any]:
    return {"samples": samples, "eligible": eligible, "broken": broken,
            "rate": broken / eligible if eligible else None}


def break_summary(s: Session, run_id: int) -> dict[str, Any]:
    """The run's break rate P(wrong with f | right without f) = broken / eligible from its break samples,
    in total, by tutor cognizance and by (cognizance, difficulty): counts are summed, never rates
    averaged; a rate is None when nothing is eligible (``opcod_core.breakrate``)."""
    rows = s.execute(select(BreakSample.tutor_cognizant, BreakSample.difficulty, func.count(),
                            func.sum(case((BreakSample.correct_without_f.is_(True), 1), else_=0)),
                            func.sum(case((BreakSample.broken.is_(True), 1), else_=0)))
                     .where(BreakSample.run_id == run_id)
                     .group_by(BreakSample.tutor_cognizant, BreakSample.difficulty)).all()
    groups = []
    total = [0, 0, 0]
    by_cog: dict[str, list[int]] = {}
    for cog, diff, n, eligible, broken in rows:
        c = (int(n), int(eligible or 0), int(broken or 0))
        groups.append({"cognizant": bool(cog), "difficulty": diff, **_counts(*c)})
        acc = by_cog.setdefault("cognizant" if cog else "incognizant", [0, 0, 0])
        for i in range(3):
            acc[i] += c[i]
            total[i] += c[i]
    groups.sort(key=lambda g: (not g["cognizant"], str(g["difficulty"])))
    return {**_counts(*total), "groups": groups,
            "by_cognizance": {k: _counts(*v) for k, v in sorted(by_cog.items())}}


def evals(db: SessionFactory, run_id: int, split: str | None = None) -> list[EvalOut]:
    with session_scope(db) as s:
        get_run(s, run_id)
        q = select(EvalResult).where(EvalResult.run_id == run_id)
        if split is not None:
            q = q.where(EvalResult.split == split)
        rows = s.scalars(q.order_by(EvalResult.round, EvalResult.student, EvalResult.domain, EvalResult.id))
        return [EvalOut.model_validate(e) for e in rows]


def parse_keys(raw: list[str] | None) -> list[str] | None:
    """``?keys=a,b&keys=c`` -> [a, b, c]; none given -> None (every key)."""
    if not raw:
        return None
    keys = [k.strip() for part in raw for k in part.split(",") if k.strip()]
    return list(dict.fromkeys(keys)) or None


def metrics(db: SessionFactory, run_id: int, keys: list[str] | None = None,
            since_step: int | None = None, max_steps: int = 5000) -> MetricsOut:
    """Series per key, ordered by global step (served by the ``(run_id, key, global_step)`` index), for at
    most ``max_steps`` global steps after ``since_step``; ``next_since_step`` continues when there are more."""
    with session_scope(db) as s:
        get_run(s, run_id)
        if keys is None:
            keys = list(s.scalars(select(Metric.key).where(Metric.run_id == run_id).distinct().order_by(Metric.key)))
        keys = keys[:MAX_KEYS] if len(keys) > MAX_KEYS else keys
        series: dict[str, list[tuple[int, float]]] = {k: [] for k in keys}
        if keys:
            q = select(Metric.key, Metric.global_step, Metric.value).where(
                Metric.run_id == run_id, Metric.key.in_(keys))
            start = since_step if since_step is not None else -1
            last = start + max_steps
            q = q.where(Metric.global_step > start, Metric.global_step <= last)
            for key, step, value in s.execute(q.order_by(Metric.key, Metric.global_step, Metric.id)):
                series[key].append((step, value))
            more = s.scalar(select(Metric.id).where(Metric.run_id == run_id, Metric.key.in_(keys),
                                                    Metric.global_step > last).limit(1)) is not None
            return MetricsOut(keys=keys, series=series, next_since_step=last if more else None)
        return MetricsOut(keys=keys, series=series)
