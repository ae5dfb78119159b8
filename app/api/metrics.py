"""/api/v1 gates, evals, metric series, the tutoring-flow matrix and the tutor trust of a run."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from app.api.deps import get_db
from app.schemas import EvalOut, GateOut, MetricsOut
from app.schemas_flows import FlowsOut
from app.schemas_trust import TrustOut
from app.services import SessionFactory, flows, metrics, trust

router = APIRouter(tags=["metrics"])
Db = Annotated[SessionFactory, Depends(get_db)]


@router.get("/runs/{run_id}/gates", response_model=list[GateOut], summary="Gate records by round")
def gates(run_id: int, db: Db, round: int | None = Query(None, ge=0, le=2**31 - 1)) -> list[GateOut]:
    return metrics.gates(db, run_id, round)


@router.get("/runs/{run_id}/evals", response_model=list[EvalOut], summary="Evaluation results (round 0 = before training)")
def evals(run_id: int, db: Db, split: str | None = Query(None, max_length=16)) -> list[EvalOut]:
    return metrics.evals(db, run_id, split)


@router.get("/runs/{run_id}/metrics", response_model=MetricsOut,
            summary="Metric series: ?keys=loss/jsd,gate/delta (comma-separated or repeated; none: all)")
def metric_series(run_id: int, db: Db, keys: list[str] | None = Query(None, max_length=50),
                  since_step: int | None = Query(None, ge=-1, le=2**31 - 1),
                  max_steps: int = Query(5000, ge=1, le=100_000)) -> MetricsOut:
    return metrics.metrics(db, run_id, metrics.parse_keys(keys), since_step, max_steps)


@router.get("/runs/{run_id}/flows", response_model=FlowsOut,
            summary="Tutoring-flow matrix: per tutor, tutee and domain, feedback and kept counts, break rate, "
                    "and the tutee's accuracy change in the rounds that tutor taught it")
def flow_matrix(run_id: int, db: Db) -> FlowsOut:
    return flows.flows(db, run_id)


@router.get("/runs/{run_id}/trust", response_model=TrustOut,
            summary="Tutor trust: per tutor, the cumulative break rate with its Wilson interval at each probed step "
                    "(in total and per domain) and the periods it was quarantined, with who decided and why")
def tutor_trust(run_id: int, db: Db) -> TrustOut:
    return trust.trust(db, run_id)
