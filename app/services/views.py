"""Read models for the HTML dashboard (``app.web``): run-page aggregates, chart series, Pareto and gate
geometry, heatmap cells, the concept highlight, the approval queue and compare data.

Why a separate module: the REST services return API-shaped rows; the pages need aggregates shaped for
display (what a template can loop over without ever touching the database). Every function here takes
the session factory, reads in one unit of work and returns plain data (dicts, lists, dataclasses) so a
template can never trigger a lazy load. Nothing here writes.

Model output (rollouts, feedback, questions, token strings) is untrusted: this module never builds
markup. It returns *pieces* (text + flags + numbers) and the templates escape every piece.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable

from sqlalchemy import and_, func, select
from sqlalchemy.orm import Session, sessionmaker

from app.db import session_scope
from app.errors import Invalid, NotFound
from app.models import (
    Approval,
    Checkpoint,
    EvalResult,
    Event,
    Exchange,
    Feedback,
    GateRecord,
    Override,
    Prompt,
    Replay,
    Rollout,
    Run,
    Step,
)
from app.services.metrics import break_summary
from app.services.runs import allowed_actions
from opcod_core.vocabulary import ANCHORING_CATEGORIES, FINAL_RUN_STATUSES, pareto_improved

SessionFactory = sessionmaker[Session]

MAX_ID = 2**63 - 1
FEED_LIMIT = 20
PAGE_LIMIT = 50
CATEGORIES = ANCHORING_CATEGORIES


# --- small helpers ----------------------------------------------------------------------------------

def _run_or_404(session: Session, run_id: int) -> Run:
    run = session.get(Run, run_id) if 0 < run_id <= MAX_ID else None
    if run is None:
        raise NotFound(f"run {run_id} not found")
    return run


def _domains(config: dict[str, Any]) -> list[str]:
    return list((config.get("data") or {}).get("domains") or [])


def _cfg(config: dict[str, Any], *path: str, default: Any = None) -> Any:
    cur: Any = config
    for p in path:
        if not isinstance(cur, dict) or p not in cur:
            return default
        cur = cur[p]
    return cur


def _aware(dt: datetime | None) -> datetime | None:
    if dt is None:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


def _finite(x: Any) -> float | None:
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
    started = _aware(run.started_at)
    if run.status == "running" and started and 0 < frac < 1:
        now = now or datetime.now(timezone.utc)
        elapsed = (now - started).total_seconds()
        if elapsed > 0:
            eta = elapsed * (1 - frac) / frac
    return {"round": p.get("round"), "direction": p.get("direction"), "step": p.get("step"),
            "global_step": p.get("global_step"), "done": done, "total": total or None,
            "fraction": frac, "percent": round(100 * frac, 1), "eta_s": eta}


def _run_summary(run: Run, evals: list[EvalResult]) -> dict[str, Any]:
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
        "domains": _domains(cfg), "progress": progress_of(run), "latest_acc": latest,
        "algorithm": cfg.get("algorithm", "opcod"),
    }


# --- runs list ----------------------------------------------------------------------------------------

def runs_list(sf: SessionFactory, before: int | None = None, limit: int = PAGE_LIMIT) -> dict[str, Any]:
    """Newest runs first (keyset on id), each with students, domains, progress and latest accuracies."""
    limit = max(1, min(limit, 200))
    with session_scope(sf) as s:
        q = select(Run).order_by(Run.id.desc()).limit(limit + 1)
        if before is not None:
            q = q.where(Run.id < before)
        runs = list(s.scalars(q))
        more = len(runs) > limit
        runs = runs[:limit]
        ids = [r.id for r in runs]
        evals: dict[int, list[EvalResult]] = {}
        if ids:
            for e in s.scalars(select(EvalResult).where(EvalResult.run_id.in_(ids))):
                evals.setdefault(e.run_id, []).append(e)
        items = [_run_summary(r, evals.get(r.id, [])) for r in runs]
        return {"items": items, "next_before": runs[-1].id if more and runs else None}


# --- run page -----------------------------------------------------------------------------------------

def _exchange_row(ex: Exchange) -> dict[str, Any]:
    return {"id": ex.id, "key": ex.key, "round": ex.round, "direction": ex.direction,
            "global_step": ex.global_step, "tutee": ex.tutee, "tutor": ex.tutor, "domain": ex.domain,
            "correct": ex.correct, "category": ex.category, "human_edited": ex.human_edited,
            "context_used": ex.context_used, "skipped": ex.skipped, "finish_reason": ex.finish_reason,
            "loss": ex.loss, "created_at": ex.created_at}


def _feed_rows(s: Session, q) -> list[dict[str, Any]]:
    """Exchange rows plus a short excerpt of rollout and question (joined, one query)."""
    rows = []
    for ex, text, question in s.execute(q):
        d = _exchange_row(ex)
        d["rollout_excerpt"] = _excerpt(text, 90)
        d["question_excerpt"] = _excerpt(question, 70)
        rows.append(d)
    return rows


def _excerpt(text: str | None, n: int) -> str:
    t = " ".join((text or "").split())
    return t if len(t) <= n else t[: n - 1] + "…"


def _feed_query(run_id: int):
    return (select(Exchange, Rollout.text, Prompt.question)
            .join(Rollout, Rollout.id == Exchange.rollout_id)
            .join(Prompt, Prompt.id == Rollout.prompt_id)
            .where(Exchange.run_id == run_id))


def exchange_feed(sf: SessionFactory, run_id: int, limit: int = FEED_LIMIT) -> list[dict[str, Any]]:
    """The newest ``limit`` exchanges of a run (never all of them)."""
    with session_scope(sf) as s:
        _run_or_404(s, run_id)
        q = _feed_query(run_id).order_by(Exchange.id.desc()).limit(max(1, min(limit, 200)))
        return _feed_rows(s, q)


def run_page(sf: SessionFactory, run_id: int, feed_limit: int = FEED_LIMIT) -> dict[str, Any]:
    """Everything the live run page shows except the chart series (``chart_data``)."""
    with session_scope(sf) as s:
        run = _run_or_404(s, run_id)
        evals = list(s.scalars(select(EvalResult).where(EvalResult.run_id == run_id)
                               .order_by(EvalResult.round, EvalResult.id)))
        summary = _run_summary(run, evals)
        cfg = run.config or {}
        gates = [_gate_dict(g) for g in s.scalars(select(GateRecord).where(GateRecord.run_id == run_id)
                                                  .order_by(GateRecord.round, GateRecord.id))]
        n_ex = s.scalar(select(func.count()).select_from(Exchange).where(Exchange.run_id == run_id)) or 0
        n_steps = s.scalar(select(func.count()).select_from(Step).where(Step.run_id == run_id)) or 0
        pending_overrides = s.scalar(select(func.count()).select_from(Override).where(
            Override.run_id == run_id, Override.status == "pending")) or 0
        pending_approvals = s.scalar(select(func.count()).select_from(Approval).where(
            Approval.run_id == run_id, Approval.status == "pending")) or 0
        last_step = s.scalars(select(Step).where(Step.run_id == run_id)
                              .order_by(Step.global_step.desc()).limit(1)).first()
        run_overrides = [_override_dict(o) for o in s.scalars(
            select(Override).where(Override.run_id == run_id, Override.exchange_id.is_(None))
            .order_by(Override.id.desc()).limit(20))]
        feed = _feed_rows(s, _feed_query(run_id).order_by(Exchange.id.desc()).limit(feed_limit))
        checkpoints = [{"id": c.id, "tag": c.tag, "round": c.round, "created_at": c.created_at}
                       for c in s.scalars(select(Checkpoint).where(Checkpoint.run_id == run_id)
                                          .order_by(Checkpoint.id.desc()).limit(20))]
        breaks = break_summary(s, run_id)
        tput = None
        if last_step is not None:
            tput = _finite((last_step.metrics or {}).get("throughput/rollout_tokens_per_s"))
        return {
            "run": summary,
            "config": {
                "rounds": _cfg(cfg, "schedule", "rounds"), "K": _cfg(cfg, "schedule", "steps_per_direction"),
                "n": _cfg(cfg, "rollout", "n"), "batch": _cfg(cfg, "rollout", "batch_prompts"),
                "tau": _cfg(cfg, "gating", "tau"), "mode": _cfg(cfg, "gating", "mode"),
                "context_mode": cfg.get("context_mode"), "divergence": _cfg(cfg, "loss", "divergence"),
                "lr": _cfg(cfg, "optim", "lr"), "approval": _cfg(cfg, "tutor", "approval"),
                "backend": cfg.get("backend"), "seed": cfg.get("seed"), "algorithm": cfg.get("algorithm"),
                "source": _cfg(cfg, "data", "source"),
            },
            "gates": gates,
            "gate_svg": gate_geometry(gates, summary["students"]),
            "pareto": pareto_geometry(_pareto_series(evals, summary["students"], summary["domains"]),
                                      summary["domains"]),
            "counts": {"exchanges": n_ex, "steps": n_steps, "pending_overrides": pending_overrides,
                       "pending_approvals": pending_approvals},
            "last_step": None if last_step is None else {
                "global_step": last_step.global_step, "loss": last_step.loss, "tutee": last_step.tutee,
                "tutor": last_step.tutor, "metrics": dict(last_step.metrics or {})},
            "tokens_per_s": tput,
            "break": breaks,
            "overrides": run_overrides,
            "feed": feed,
            "feed_limit": feed_limit,
            "checkpoints": checkpoints,
            "latest_exchange_id": feed[0]["id"] if feed else 0,
            # the live page subscribes to events after this id (it already shows everything before)
            "last_event_id": s.scalar(select(func.max(Event.id)).where(Event.run_id == run_id)) or 0,
        }


def _gate_dict(g: GateRecord) -> dict[str, Any]:
    return {"id": g.id, "round": g.round, "student": g.student, "scores": dict(g.scores or {}),
            "best": dict(g.best or {}), "delta": g.delta, "tau": g.tau, "mode": g.mode,
            "decision": g.decision, "source": g.source, "allowed_domains": g.allowed_domains,
            "reason": g.reason, "split": g.split, "k": g.k, "note": g.note, "created_at": g.created_at,
            "delta_se": g.delta_se, "score_se": dict(g.score_se) if g.score_se else None,
            "n_items": dict(g.n_items) if g.n_items else None}


def _override_dict(o: Override) -> dict[str, Any]:
    return {"id": o.id, "exchange_id": o.exchange_id, "kind": o.kind, "payload": dict(o.payload or {}),
            "author": o.author, "status": o.status, "created_at": o.created_at,
            "applied_at": o.applied_at, "applied_at_step": o.applied_at_step}


# --- geometry for server-drawn SVG charts (numbers only; labels are escaped by the template) --------

PARETO_W, PARETO_H, PAD = 260, 260, 36
COLORS = ("#1f6feb", "#d9480f", "#2b8a3e", "#ae3ec9", "#e67700", "#0c8599", "#c2255c", "#5c7cfa")


def _pareto_series(evals: Iterable[EvalResult], students: list[dict[str, Any]],
                   domains: list[str]) -> list[dict[str, Any]]:
    by: dict[str, dict[int, dict[str, float]]] = {}
    for e in evals:
        if e.split != "test":
            continue
        by.setdefault(e.student, {}).setdefault(e.round, {})[e.domain] = e.accuracy
    out = []
    for st in students:
        rounds = by.get(st["name"], {})
        pts = []
        for r in sorted(rounds):
            a, b = (rounds[r].get(domains[0]), rounds[r].get(domains[1])) if len(domains) == 2 else (None, None)
            if a is not None and b is not None:
                pts.append({"round": r, "a": a, "b": b})
        out.append({"student": st["name"], "points": pts})
    return out


def _scale(v: float, lo: float, hi: float, px_lo: float, px_hi: float) -> float:
    if hi <= lo:
        return px_lo
    return round(px_lo + (v - lo) / (hi - lo) * (px_hi - px_lo), 1)


def pareto_geometry(series: list[dict[str, Any]], domains: list[str],
                    label: str | None = None) -> list[dict[str, Any]]:
    """One panel per student: axes 0..1 (domain A accuracy on x, B on y), the initial point, the
    trajectory over evaluations and the shaded region that counts as Pareto improvement (both scores at
    least the initial ones)."""
    panels = []
    for i, st in enumerate(series):
        panels.append(_pareto_panel([st], domains, st["student"], [COLORS[i % len(COLORS)]]))
    return panels


def _pareto_panel(series: list[dict[str, Any]], domains: list[str], title: str,
                  colors: list[str]) -> dict[str, Any]:
    w, h, pad = PARETO_W, PARETO_H, PAD
    x0, x1, y0, y1 = pad, w - 10, h - pad, 10

    def X(v):
        return _scale(v, 0.0, 1.0, x0, x1)

    def Y(v):
        return _scale(v, 0.0, 1.0, y0, y1)

    lines = []
    region = None
    for st, color in zip(series, colors, strict=True):
        pts = st["points"]
        if not pts:
            lines.append({"label": st.get("label") or st["student"], "color": color, "points": [],
                          "path": "", "initial": None, "last": None})
            continue
        init = pts[0]
        if region is None:
            region = {"x": X(init["a"]), "y": y1, "w": round(X(1.0) - X(init["a"]), 1),
                      "h": round(Y(init["b"]) - y1, 1)}
        p = [{"x": X(q["a"]), "y": Y(q["b"]), "round": q["round"], "a": q["a"], "b": q["b"]} for q in pts]
        last = pts[-1]
        improved = pareto_improved({"a": init["a"], "b": init["b"]}, {"a": last["a"], "b": last["b"]})
        lines.append({"label": st.get("label") or st["student"], "color": color, "points": p,
                      "path": " ".join(f"{q['x']},{q['y']}" for q in p), "initial": p[0], "last": p[-1],
                      "improved": improved, "init_acc": init, "last_acc": last})
    ticks = [{"v": t, "x": X(t), "y": Y(t)} for t in (0.0, 0.25, 0.5, 0.75, 1.0)]
    return {"title": title, "w": w, "h": h, "x0": x0, "x1": x1, "y0": y0, "y1": y1, "lines": lines,
            "region": region, "ticks": ticks,
            "xlabel": domains[0] if domains else "domain A", "ylabel": domains[1] if len(domains) > 1 else "domain B"}


GATE_W, GATE_H = 420, 220


def gate_geometry(gates: list[dict[str, Any]], students: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Delta per student per round as points (filled: tutor, hollow: silent) against the tau line."""
    auto = [g for g in gates if g["student"]]
    if not auto:
        return None
    # the newest record per (round, student) is the one in force
    latest: dict[tuple[int, str], dict[str, Any]] = {}
    for g in auto:
        latest[(g["round"], g["student"])] = g
    rounds = sorted({r for r, _ in latest})
    names = [s["name"] for s in students] or sorted({n for _, n in latest})
    vmax = max([g["delta"] + (g.get("delta_se") or 0.0) for g in latest.values()]
               + [g["tau"] for g in latest.values()] + [0.05])
    vmax = _nice_ceiling(vmax * 1.1)
    w, h, pad = GATE_W, GATE_H, 40
    x0, x1, y0, y1 = pad, w - 12, h - 30, 12
    slot = (x1 - x0) / max(len(rounds), 1)
    pts = []
    taus = []
    for ri, r in enumerate(rounds):
        cx = x0 + slot * (ri + 0.5)
        tau_here = None
        for si, name in enumerate(names):
            g = latest.get((r, name))
            if g is None:
                continue
            tau_here = g["tau"]
            off = (si - (len(names) - 1) / 2) * min(18, slot / 4)
            se = g.get("delta_se")
            se_bar = None if se is None else {"y_lo": _scale(max(g["delta"] - se, 0.0), 0, vmax, y0, y1),
                                              "y_hi": _scale(g["delta"] + se, 0, vmax, y0, y1)}
            pts.append({"x": round(cx + off, 1), "y": _scale(g["delta"], 0, vmax, y0, y1), "round": r,
                        "student": name, "delta": g["delta"], "delta_se": se, "se_bar": se_bar, "tau": g["tau"],
                        "decision": g["decision"], "color": COLORS[si % len(COLORS)], "source": g["source"]})
        if tau_here is not None:
            taus.append({"x0": round(x0 + slot * ri + 4, 1), "x1": round(x0 + slot * (ri + 1) - 4, 1),
                         "y": _scale(tau_here, 0, vmax, y0, y1), "tau": tau_here, "round": r})
    yt = [{"v": round(vmax * t / 4, 4), "y": _scale(vmax * t / 4, 0, vmax, y0, y1)} for t in range(5)]
    xt = [{"round": r, "x": round(x0 + slot * (i + 0.5), 1)} for i, r in enumerate(rounds)]
    return {"w": w, "h": h, "x0": x0, "x1": x1, "y0": y0, "y1": y1, "points": pts, "taus": taus,
            "yticks": yt, "xticks": xt,
            "legend": [{"name": n, "color": COLORS[i % len(COLORS)]} for i, n in enumerate(names)]}


def _nice_ceiling(v: float) -> float:
    if v <= 0:
        return 1.0
    e = 10 ** math.floor(math.log10(v))
    for m in (1, 2, 2.5, 5, 10):
        if m * e >= v:
            return m * e
    return 10 * e


# --- chart series (JSON for uPlot) --------------------------------------------------------------------

def _step_rows(s: Session, run_id: int) -> list[Step]:
    return list(s.scalars(select(Step).where(Step.run_id == run_id).order_by(Step.global_step)))


def _series_from_steps(steps: list[Step], students: list[str]) -> dict[str, Any]:
    x = [st.global_step for st in steps]

    def col(key: str) -> list[float | None]:
        return [_finite((st.metrics or {}).get(key)) for st in steps]

    loss_by = {n: [(_finite(st.loss) if st.tutee == n else None) for st in steps] for n in students}
    return {
        "x": x,
        "loss": {"labels": [f"loss ({n} tutee)" for n in students], "series": [loss_by[n] for n in students]},
        "anchoring": {"labels": list(CATEGORIES), "series": [col(f"anchoring/{c}") for c in CATEGORIES]},
        "kept_rate": {"labels": ["kept rate"], "series": [col("anchoring/kept_rate")]},
        "break_rate": {"labels": ["break rate"], "series": [col("break/rate")]},
        "throughput": {"labels": ["rollout tokens/s"], "series": [col("throughput/rollout_tokens_per_s")]},
        "accuracy": {"labels": ["rollout accuracy"], "series": [col("rollout/accuracy")]},
        "finish": {"labels": ["stopped (EOS)", "stop string", "cut at limit", "no parsable answer"],
                   "series": [col("rollout/finish_eos"), col("rollout/finish_stop"), col("rollout/finish_length"),
                              col("rollout/parse_failure")]},
        "length": {"labels": ["mean rollout tokens"], "series": [col("rollout/mean_length")]},
        "weight_l2": {"labels": [f"‖θ−θ₀‖ ({n} tutee)" for n in students],
                      "series": [[(_finite((st.metrics or {}).get("train/weight_l2")) if st.tutee == n else None)
                                  for st in steps] for n in students]},
        "grad_norm": {"labels": ["grad norm"], "series": [col("train/grad_norm")]},
    }


def chart_data(sf: SessionFactory, run_id: int) -> dict[str, Any]:
    """Per-step series for the run page's uPlot charts (x = global step; missing values are null)."""
    with session_scope(sf) as s:
        run = _run_or_404(s, run_id)
        students = [st.name for st in run.students]
        steps = _step_rows(s, run_id)
        out = _series_from_steps(steps, students)
        loss_key = "loss/" + str(_cfg(run.config or {}, "loss", "divergence", default="jsd"))
        out["loss"]["title"] = loss_key
        # mean per-token divergence of the stored exchanges, per step (the "divergence" curve)
        div = dict(s.execute(select(Exchange.global_step, func.avg(Exchange.loss))
                             .where(Exchange.run_id == run_id, Exchange.skipped.is_(False))
                             .group_by(Exchange.global_step)).all())
        out["divergence"] = {"labels": ["mean exchange divergence"],
                             "series": [[_finite(div.get(g)) for g in out["x"]]]}
        out["status"] = run.status
        return out


# --- exchanges table ----------------------------------------------------------------------------------

@dataclass
class ExchangeFilters:
    domain: str | None = None
    round: int | None = None
    direction: int | None = None
    correct: bool | None = None
    category: str | None = None
    human_edited: bool | None = None

    def active(self) -> bool:
        return any(v is not None for v in (self.domain, self.round, self.direction, self.correct,
                                           self.category, self.human_edited))

    def query_items(self) -> list[tuple[str, str]]:
        out = []
        for k in ("domain", "round", "direction", "category"):
            v = getattr(self, k)
            if v is not None:
                out.append((k, str(v)))
        for k in ("correct", "human_edited"):
            v = getattr(self, k)
            if v is not None:
                out.append((k, "true" if v else "false"))
        return out


def exchanges_page(sf: SessionFactory, run_id: int, filters: ExchangeFilters, before: int | None = None,
                   after: int | None = None, limit: int = PAGE_LIMIT) -> dict[str, Any]:
    """Keyset page newest-first (``id < before``), or the rows newer than ``after`` (live head)."""
    limit = max(1, min(limit, 200))
    with session_scope(sf) as s:
        run = _run_or_404(s, run_id)
        q = _feed_query(run_id)
        f = filters
        conds = []
        if f.domain is not None:
            conds.append(Exchange.domain == f.domain)
        if f.round is not None:
            conds.append(Exchange.round == f.round)
        if f.direction is not None:
            conds.append(Exchange.direction == f.direction)
        if f.correct is not None:
            conds.append(Exchange.correct.is_(f.correct))
        if f.category is not None:
            conds.append(Exchange.category.is_(None) if f.category == "none" else Exchange.category == f.category)
        if f.human_edited is not None:
            conds.append(Exchange.human_edited.is_(f.human_edited))
        if conds:
            q = q.where(and_(*conds))
        if after is not None:
            q = q.where(Exchange.id > after)
        if before is not None:
            q = q.where(Exchange.id < before)
        rows = _feed_rows(s, q.order_by(Exchange.id.desc()).limit(limit + 1))
        more = len(rows) > limit
        rows = rows[:limit]
        return {"items": rows, "next_before": rows[-1]["id"] if more and rows and after is None else None,
                "top_id": max([r["id"] for r in rows] + [after or 0]) if after is not None else (
                    rows[0]["id"] if rows else 0),
                "last_event_id": s.scalar(select(func.max(Event.id)).where(Event.run_id == run_id)) or 0,
                "run": {"id": run.id, "name": run.name, "status": run.status, "final": run.status in FINAL_RUN_STATUSES,
                        "domains": _domains(run.config or {}),
                        "rounds": _cfg(run.config or {}, "schedule", "rounds")}}


# --- one exchange --------------------------------------------------------------------------------------

def concept_pieces(text: str | None, concept: str | None) -> list[tuple[str, bool]]:
    """``text`` split into (piece, is_concept) with every case-insensitive occurrence of ``concept``
    marked; the template escapes each piece and wraps marked ones in <mark>."""
    text = text or ""
    c = (concept or "").strip()
    if not c:
        return [(text, False)] if text else []
    out: list[tuple[str, bool]] = []
    pos = 0
    for m in re.finditer(re.escape(c), text, flags=re.IGNORECASE):
        if m.start() > pos:
            out.append((text[pos:m.start()], False))
        out.append((m.group(0), True))
        pos = m.end()
    if pos < len(text):
        out.append((text[pos:], False))
    return out


@dataclass
class Heatmap:
    """One row of per-token cells; ``level`` is |value| / max |value| in 0..1 (colour intensity)."""

    title: str
    kind: str  # "div" (non-negative) or "effect" (signed)
    cells: list[dict[str, Any]] = field(default_factory=list)
    vmax: float = 0.0
    mean: float | None = None


def heatmap(tokens: list[Any] | None, values: list[float] | None, title: str, kind: str = "div",
            vmax: float | None = None) -> Heatmap | None:
    """Cells for one heatmap row; pass ``vmax`` to put several rows on one colour scale."""
    if not values:
        return None
    toks = [str(t) for t in (tokens or [])]
    if len(toks) < len(values):
        toks += [f"#{i}" for i in range(len(toks), len(values))]
    vals = [(_finite(v) or 0.0) for v in values]
    if vmax is None:
        vmax = max((abs(v) for v in vals), default=0.0)
    cells = []
    for i, (t, v) in enumerate(zip(toks, vals)):
        level = (abs(v) / vmax) if vmax > 0 else 0.0
        cells.append({"i": i, "token": display_token(t), "value": v, "level": round(level, 3),
                      "sign": "pos" if v > 0 else ("neg" if v < 0 else "zero"),
                      "label": f"{v:+.6f}" if kind == "effect" else f"{v:.6f}"})
    return Heatmap(title=title, kind=kind, cells=cells, vmax=vmax, mean=sum(vals) / len(vals))


def display_token(t: str) -> str:
    """Make tokenizer whitespace markers visible (BPE 'Ġ'/'Ċ', sentencepiece '▁') without hiding text."""
    return t.replace("Ġ", " ").replace("▁", " ").replace("Ċ", "\n")


def effect_values(div: list[float] | None, div_s: list[float] | None) -> list[float] | None:
    if not div or not div_s or len(div) != len(div_s):
        return None
    return [a - b for a, b in zip(div, div_s, strict=True)]


def exchange_detail(sf: SessionFactory, exchange_id: int) -> dict[str, Any]:
    with session_scope(sf) as s:
        ex = s.get(Exchange, exchange_id) if 0 < exchange_id <= MAX_ID else None
        if ex is None:
            raise NotFound(f"exchange {exchange_id} not found")
        run = s.get(Run, ex.run_id)
        ro = s.get(Rollout, ex.rollout_id)
        pr = s.get(Prompt, ro.prompt_id)
        fb = s.get(Feedback, ex.feedback_id) if ex.feedback_id is not None else None
        gate = s.scalars(select(GateRecord).where(GateRecord.run_id == ex.run_id, GateRecord.round == ex.round,
                                                  GateRecord.student == ex.tutor)
                         .order_by(GateRecord.id.desc()).limit(1)).first()
        overrides = [_override_dict(o) for o in s.scalars(
            select(Override).where(Override.exchange_id == ex.id).order_by(Override.id.desc()))]
        provenance = None
        if ex.override_id is not None:
            o = s.get(Override, ex.override_id)
            provenance = _override_dict(o) if o else None
        derived = list(s.scalars(select(Exchange.id).where(Exchange.origin_exchange_id == ex.id)
                                 .order_by(Exchange.id)))
        replays = [replay_view_from_row(r, ex.tokens) for r in s.scalars(
            select(Replay).where(Replay.exchange_id == ex.id).order_by(Replay.id.desc()).limit(10))]
        checkpoints = [{"id": c.id, "tag": c.tag, "round": c.round} for c in s.scalars(
            select(Checkpoint).where(Checkpoint.run_id == ex.run_id).order_by(Checkpoint.id.desc()).limit(50))]
        approval = s.scalars(select(Approval).where(Approval.run_id == ex.run_id,
                                                    Approval.exchange_key == ex.key)).first()
        labels = list(pr.labels or [])
        choices = list(pr.choices or [])
        concept = fb.concept if fb else None
        eff = effect_values(ex.divergence, ex.divergence_s_only)
        heat_div = heatmap(ex.tokens, ex.divergence, f"divergence per token (context {ex.context_used})")
        heat_eff = heatmap(ex.tokens, eff, "feedback effect: divergence with s+f minus with s only",
                           "effect") if ex.context_used == "s+f" else None
        return {
            "exchange": {**_exchange_row(ex), "s_index": ex.s_index, "s_text": ex.s_text,
                         "teacher_context": ex.teacher_context, "origin_exchange_id": ex.origin_exchange_id,
                         "override_id": ex.override_id, "step_id": ex.step_id,
                         "n_tokens": len(ex.tokens or [])},
            "run": {"id": run.id, "name": run.name, "status": run.status, "final": run.status in FINAL_RUN_STATUSES,
                    "approval": _cfg(run.config or {}, "tutor", "approval"),
                    "context_mode": (run.config or {}).get("context_mode")},
            "prompt": {"id": pr.id, "item_key": pr.item_key, "domain": pr.domain, "split": pr.split,
                       "answer_type": pr.answer_type, "question": pr.question,
                       "question_pieces": concept_pieces(pr.question, concept),
                       "choices": [{"label": labels[i] if i < len(labels) else chr(65 + i), "text": str(c),
                                    "gold": (labels[i] if i < len(labels) else chr(65 + i)) == pr.gold}
                                   for i, c in enumerate(choices)],
                       "gold": pr.gold},
            "rollout": {"id": ro.id, "student": ro.student, "text": ro.text, "answer": ro.answer,
                        "correct": ro.correct, "prompt_index": ro.prompt_index, "rollout_index": ro.rollout_index},
            "feedback": None if fb is None else {
                "id": fb.id, "tutor": fb.tutor, "raw": fb.raw, "concept": fb.concept, "category": fb.category,
                "sanitised": fb.sanitised, "redactions": list(fb.redactions or []), "used_text": fb.used_text,
                "source": fb.source, "approval": fb.approval,
                "concept_in_question": any(hit for _, hit in concept_pieces(pr.question, fb.concept))},
            "gate": _gate_dict(gate) if gate else None,
            "overrides": overrides,
            "pending_overrides": [o for o in overrides if o["status"] == "pending"],
            "provenance": provenance,
            "derived": derived,
            "replays": replays,
            "checkpoints": checkpoints,
            "approval": None if approval is None else {"id": approval.id, "status": approval.status,
                                                       "text": approval.text, "deadline": approval.deadline},
            "heat_div": heat_div,
            "heat_eff": heat_eff,
            "has_tokens": bool(ex.tokens),
        }


def replay_view_from_row(r: Replay, tokens: list[Any] | None = None) -> dict[str, Any]:
    """A replay row as the page shows it: status, inputs and, when done, before/after heatmaps and the
    teacher's answer distribution (labels with before/after probabilities)."""
    res = r.result or {}
    toks = res.get("tokens") or tokens
    before, after = res.get("before") or {}, res.get("after") or {}
    dist = []
    db, da = before.get("answer_distribution") or {}, after.get("answer_distribution") or {}
    for lab in list(dict.fromkeys([*db.keys(), *da.keys()])):
        pb, pa = _finite(db.get(lab)), _finite(da.get(lab))
        dist.append({"label": str(lab), "before": pb, "after": pa,
                     "before_pct": round(100 * (pb or 0.0), 1), "after_pct": round(100 * (pa or 0.0), 1)})
    gen = res.get("generated_feedback") or None
    done = r.status == "done"
    # before and after share one colour scale, so equal colours mean equal divergence
    shared = max([abs(_finite(v) or 0.0) for v in (before.get("divergence") or []) + (after.get("divergence") or [])]
                 or [0.0])
    return {
        "id": r.id, "exchange_id": r.exchange_id, "status": r.status, "error": r.error,
        "inputs": dict(r.inputs or {}), "created_at": r.created_at, "finished_at": r.finished_at,
        "done": r.status in ("done", "failed"),
        "before": heatmap(toks, before.get("divergence"), "before: stored feedback", vmax=shared) if done else None,
        "after": heatmap(toks, after.get("divergence"), "after: replayed feedback", vmax=shared) if done else None,
        "effect": heatmap(toks, res.get("effect"), "after minus before", "effect") if done else None,
        "mean_before": _finite(before.get("mean_divergence")), "mean_after": _finite(after.get("mean_divergence")),
        "feedback_before": before.get("feedback"), "feedback_after": after.get("feedback"),
        "distribution": dist, "generated": gen,
    }


def replay_view(sf: SessionFactory, exchange_id: int, replay_id: int) -> dict[str, Any]:
    with session_scope(sf) as s:
        r = s.get(Replay, replay_id) if 0 < replay_id <= MAX_ID else None
        if r is None or r.exchange_id != exchange_id:
            raise NotFound(f"replay {replay_id} of exchange {exchange_id} not found")
        ex = s.get(Exchange, r.exchange_id)
        return replay_view_from_row(r, ex.tokens if ex else None)


# --- approvals ----------------------------------------------------------------------------------------

def approvals_queue(sf: SessionFactory, run_id: int, limit: int = 100) -> dict[str, Any]:
    """Pending approvals oldest first (the order the worker waits on them) plus the last decisions."""
    with session_scope(sf) as s:
        run = _run_or_404(s, run_id)
        pending = list(s.scalars(select(Approval).where(Approval.run_id == run_id, Approval.status == "pending")
                                 .order_by(Approval.id).limit(limit)))
        decided = list(s.scalars(select(Approval).where(Approval.run_id == run_id, Approval.status != "pending")
                                 .order_by(Approval.id.desc()).limit(20)))
        keys = [a.exchange_key for a in pending + decided]
        ex_ids = dict(s.execute(select(Exchange.key, Exchange.id).where(Exchange.run_id == run_id,
                                                                        Exchange.key.in_(keys))).all()) if keys else {}

        def item(a: Approval) -> dict[str, Any]:
            p = a.payload or {}
            return {"id": a.id, "key": a.exchange_key, "status": a.status, "text": a.text,
                    "decided_by": a.decided_by, "decided_at": a.decided_at, "deadline": a.deadline,
                    "created_at": a.created_at, "exchange_id": ex_ids.get(a.exchange_key),
                    "tutee": p.get("tutee"), "tutor": p.get("tutor"), "domain": p.get("domain"),
                    "question": p.get("question") or "", "rollout": p.get("rollout_text") or "",
                    "correct": p.get("correct"), "concept": p.get("concept"),
                    "feedback_raw": p.get("feedback_raw"), "feedback": p.get("feedback_sanitised"),
                    "question_pieces": concept_pieces(p.get("question") or "", p.get("concept"))}

        return {"run": {"id": run.id, "name": run.name, "status": run.status, "final": run.status in FINAL_RUN_STATUSES,
                        "approval": _cfg(run.config or {}, "tutor", "approval"),
                        "gating_mode": _cfg(run.config or {}, "gating", "mode"),
                        "timeout_s": _cfg(run.config or {}, "tutor", "approval_timeout_s"),
                        "default": _cfg(run.config or {}, "tutor", "approval_default")},
                "pending": [item(a) for a in pending], "decided": [item(a) for a in decided]}


# --- compare ------------------------------------------------------------------------------------------

def parse_run_ids(raw: str | None, max_runs: int = 8) -> list[int]:
    ids: list[int] = []
    for part in (raw or "").replace(" ", ",").split(","):
        if not part:
            continue
        if not part.isdigit() or not 0 < int(part) <= MAX_ID:
            raise Invalid.field("runs", f"'{part[:20]}' is not a run id")
        if int(part) not in ids:
            ids.append(int(part))
    if len(ids) > max_runs:
        raise Invalid.field("runs", f"compare at most {max_runs} runs")
    return ids


def compare_data(sf: SessionFactory, run_ids: list[int]) -> dict[str, Any]:
    """Pareto trajectories of every (run, student) on one pair of axes per student position, and the
    key curves (loss, kept rate, break rate, gate delta) on a shared global-step axis."""
    with session_scope(sf) as s:
        runs = []
        for rid in run_ids:
            runs.append(_run_or_404(s, rid))
        panels = []
        curves: dict[str, Any] = {}
        xs: set[int] = set()
        per_run: list[tuple[Run, dict[int, Step]]] = []
        summaries = []
        evals_by: dict[int, list[EvalResult]] = {}
        for run in runs:
            evals_by[run.id] = list(s.scalars(select(EvalResult).where(EvalResult.run_id == run.id)))
            steps = _step_rows(s, run.id)
            per_run.append((run, {st.global_step: st for st in steps}))
            xs.update(st.global_step for st in steps)
            summaries.append(_run_summary(run, evals_by[run.id]))
        x = sorted(xs)
        colors = [COLORS[i % len(COLORS)] for i in range(len(runs))]
        # Pareto: one panel per student position; a line per run
        for pos in (0, 1):
            series = []
            for run in runs:
                students = [{"name": st.name} for st in run.students]
                doms = _domains(run.config or {})
                ser = _pareto_series(evals_by[run.id], students, doms)
                st = ser[pos] if pos < len(ser) else {"student": "?", "points": []}
                series.append({**st, "label": f"#{run.id} {run.name}: {st['student']}"})
            doms0 = _domains(runs[0].config or {}) if runs else []
            panels.append(_pareto_panel(series, doms0, f"student {pos + 1}", colors))

        def per_step(fn) -> list[list[float | None]]:
            return [[(fn(steps[g]) if g in steps else None) for g in x] for _run, steps in per_run]

        labels = [f"#{run.id} {run.name}" for run in runs]
        curves["loss"] = {"title": "loss", "labels": labels, "series": per_step(lambda st: _finite(st.loss))}
        curves["kept_rate"] = {"title": "kept rate", "labels": labels,
                               "series": per_step(lambda st: _finite((st.metrics or {}).get("anchoring/kept_rate")))}
        curves["break_rate"] = {"title": "break rate", "labels": labels,
                                "series": per_step(lambda st: _finite((st.metrics or {}).get("break/rate")))}
        curves["delta"] = {"title": "gate delta of the tutor", "labels": labels,
                           "series": per_step(lambda st: _finite((st.metrics or {}).get("gate/delta")))}
        curves["throughput"] = {"title": "rollout tokens/s", "labels": labels,
                                "series": per_step(lambda st: _finite(
                                    (st.metrics or {}).get("throughput/rollout_tokens_per_s")))}
        return {"runs": summaries, "colors": colors, "pareto": panels,
                "charts": {"x": x, "curves": curves}}
