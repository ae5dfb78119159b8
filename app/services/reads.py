"""Read helpers shared by the dashboard's page read models (``app.services.run_views``,
``app.services.exchange_views``): the run summary and progress, exchange rows and the keyset feed query,
gate and override rows, Pareto series. Plain data only: presentation (SVG geometry, heatmap cells, the
concept highlight) is ``app.web``'s.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any, Iterable

from sqlalchemy import select
from sqlalchemy.orm import Session, defer

from app.models import EvalResult, Exchange, GateRecord, Override, Prompt, Rollout, Run, Step
from app.services import get_run
from app.lifecycle import allowed_actions
from opcod_core.vocabulary import FINAL_RUN_STATUSES

FEED_LIMIT = 20
PAGE_LIMIT = 50


def run_or_404(session: Session, run_id: int) -> Run:
    """The run, or ``NotFound`` (the services' one id rule: ``get_run``)."""
    return get_run(session, run_id)


def domains_of(config: dict[str, Any]) -> list[str]:
    return list((config.get("data") or {}).get("domains") or [])


def student_names(run: Run) -> list[str]:
    """The run's student names in position order, then any other student its config lists (a run of more
    peers than the student rows hold)."""
    configured = [st.get("name") if isinstance(st, dict) else st for st in (run.config or {}).get("students") or []]
    names = [st.name for st in run.students] + [n for n in configured if isinstance(n, str) and n]
    return list(dict.fromkeys(names))


def aware(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def finite(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def progress_of(run: Run, now: datetime | None = None) -> dict[str, Any]:
    """Round/direction/step, fraction of tasks done and an ETA (seconds) extrapolated from elapsed time."""
    p = dict(run.progress or {})
    total = run.total_tasks or 0
    done = min(run.next_task or 0, total) if total else (run.next_task or 0)
    frac = (done / total) if total else 0.0
    if run.status == "finished":
        frac = 1.0
    eta = None
    started = aware(run.started_at)
    if run.status == "running" and started and 0 < frac < 1:
        now = now or datetime.now(timezone.utc)
        elapsed = (now - started).total_seconds()
        if elapsed > 0:
            eta = elapsed * (1 - frac) / frac
    return {"round": p.get("round"), "direction": p.get("direction"), "step": p.get("step"),
            "global_step": p.get("global_step"), "done": done, "total": total or None,
            "fraction": frac, "percent": round(100 * frac, 1), "eta_s": eta}


def run_summary(run: Run, evals: list[EvalResult]) -> dict[str, Any]:
    cfg = run.config or {}
    latest: dict[str, dict[str, float]] = {}
    best_round: dict[tuple[str, str], int] = {}
    for e in evals:
        if e.split != "test":
            continue
        k = (e.student, e.domain)
        if k not in best_round or e.round >= best_round[k]:
            best_round[k] = e.round
            latest.setdefault(e.student, {})[e.domain] = e.accuracy
    return {
        "id": run.id, "name": run.name, "preset": run.preset, "status": run.status,
        "requested_action": run.requested_action, "error": run.error,
        "final": run.status in FINAL_RUN_STATUSES, "actions": allowed_actions(run.status, run.requested_action),
        "created_at": run.created_at, "started_at": run.started_at, "finished_at": run.finished_at,
        "parent_run_id": run.parent_run_id,
        "students": [{"name": s.name, "model": s.model_ref, "strong_domain": s.strong_domain}
                     for s in run.students],
        "domains": domains_of(cfg), "progress": progress_of(run), "latest_acc": latest,
        "algorithm": cfg.get("algorithm", "opcod"),
    }


def exchange_row(ex: Exchange) -> dict[str, Any]:
    return {"id": ex.id, "key": ex.key, "round": ex.round, "direction": ex.direction,
            "global_step": ex.global_step, "tutee": ex.tutee, "tutor": ex.tutor, "domain": ex.domain,
            "correct": ex.correct, "category": ex.category, "human_edited": ex.human_edited,
            "context_used": ex.context_used, "skipped": ex.skipped, "finish_reason": ex.finish_reason,
            "loss": ex.loss, "created_at": ex.created_at}


def feed_rows(s: Session, q) -> list[dict[str, Any]]:
    """Exchange rows plus a short excerpt of rollout and question (joined, one query)."""
    return feed_dicts(s.execute(q))


def feed_dicts(result) -> list[dict[str, Any]]:
    """``feed_query``'s result rows (exchange, rollout text, question) as the lists' row dicts."""
    rows = []
    for ex, text, question in result:
        d = exchange_row(ex)
        d["rollout_excerpt"] = excerpt(text, 90)
        d["question_excerpt"] = excerpt(question, 70)
        rows.append(d)
    return rows


def excerpt(text: str | None, n: int) -> str:
    t = " ".join((text or "").split())
    return t if len(t) <= n else t[: n - 1] + "…"


#: What a list of exchanges never shows: the per-token arrays and the long texts. A page of 50 would
#: otherwise decode 150 packed arrays and 50 JSON token lists per request (about a third of the list's
#: time in the store benchmark). ``raiseload``: code that reads one of them from a list row fails loudly
#: instead of issuing a query per row.
LIST_DEFERRED = (Exchange.tokens, Exchange.student_logprob, Exchange.divergence, Exchange.divergence_s_only,
                 Exchange.teacher_context, Exchange.s_text)


def list_options() -> list[Any]:
    """Loader options of every exchange list query (``LIST_DEFERRED``)."""
    return [defer(col, raiseload=True) for col in LIST_DEFERRED]


def feed_query(run_id: int):
    return (select(Exchange, Rollout.text, Prompt.question).options(*list_options())
            .join(Rollout, Rollout.id == Exchange.rollout_id)
            .join(Prompt, Prompt.id == Rollout.prompt_id)
            .where(Exchange.run_id == run_id))


def gate_dict(g: GateRecord) -> dict[str, Any]:
    return {"id": g.id, "round": g.round, "student": g.student, "scores": dict(g.scores or {}),
            "best": dict(g.best or {}), "delta": g.delta, "tau": g.tau, "mode": g.mode,
            "decision": g.decision, "source": g.source, "allowed_domains": g.allowed_domains,
            "reason": g.reason, "split": g.split, "k": g.k, "note": g.note, "created_at": g.created_at,
            "delta_se": g.delta_se, "score_se": dict(g.score_se) if g.score_se else None,
            "n_items": dict(g.n_items) if g.n_items else None}


def override_dict(o: Override) -> dict[str, Any]:
    return {"id": o.id, "exchange_id": o.exchange_id, "kind": o.kind, "payload": dict(o.payload or {}),
            "author": o.author, "status": o.status, "created_at": o.created_at,
            "applied_at": o.applied_at, "applied_at_step": o.applied_at_step}


def pareto_series(evals: Iterable[EvalResult], students: list[dict[str, Any]],
                  domains: list[str]) -> list[dict[str, Any]]:
    """Per student (in ``students``' order, their strong domain with them): the test accuracy on every one
    of ``domains`` at each round where all of them were measured (the newest row of a round wins). Which
    two numbers a plot draws is the presenter's choice (``app.web.peer_charts``)."""
    by: dict[str, dict[int, dict[str, float]]] = {}
    for e in sorted(evals, key=lambda e: e.id or 0):
        if e.split != "test":
            continue
        by.setdefault(e.student, {}).setdefault(e.round, {})[e.domain] = e.accuracy
    out = []
    for st in students:
        rounds = by.get(st["name"], {})
        pts = [{"round": r, "scores": {d: rounds[r][d] for d in domains}} for r in sorted(rounds)
               if domains and all(d in rounds[r] for d in domains)]
        out.append({"student": st["name"], "strong_domain": st.get("strong_domain"), "points": pts})
    return out


def step_rows(s: Session, run_id: int) -> list[Step]:
    return list(s.scalars(select(Step).where(Step.run_id == run_id).order_by(Step.global_step)))
