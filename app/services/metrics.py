"""Gate records, evaluations and metric series of a run."""

from __future__ import annotations

from sqlalchemy import select

from app.db import session_scope
from app.models import EvalResult, GateRecord, Metric
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
            since_step: int | None = None) -> MetricsOut:
    """Series per key, ordered by global step (served by the ``(run_id, key, global_step)`` index)."""
    with session_scope(db) as s:
        get_run(s, run_id)
        if keys is None:
            keys = list(s.scalars(select(Metric.key).where(Metric.run_id == run_id).distinct().order_by(Metric.key)))
        keys = keys[:MAX_KEYS] if len(keys) > MAX_KEYS else keys
        series: dict[str, list[tuple[int, float]]] = {k: [] for k in keys}
        if keys:
            q = select(Metric.key, Metric.global_step, Metric.value).where(
                Metric.run_id == run_id, Metric.key.in_(keys))
            if since_step is not None:
                q = q.where(Metric.global_step > since_step)
            for key, step, value in s.execute(q.order_by(Metric.key, Metric.global_step, Metric.id)):
                series[key].append((step, value))
        return MetricsOut(keys=keys, series=series)
