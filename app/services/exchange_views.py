"""Page read models of the exchanges table, one exchange, a replay and the approval queue: rows and
raw per-token arrays (``app.web.presenters`` turns them into heatmap cells and the concept highlight).
One exchange shows every tutor's feedback (N peers: the other tutors' and the quarantined ones' in the
shadow, after the primary one) and its route."""

from __future__ import annotations

from typing import Any

from pydantic import Field
from sqlalchemy import func, select

from app.db import session_scope
from app.errors import Invalid, NotFound
from app.exchange_events import ordered_feedback
from app.models import Approval, Checkpoint, Event, Exchange, Feedback, GateRecord, Override, Prompt, Replay, Rollout, Run
from app.services import MAX_ID, SessionFactory, keyset_page
from app.services.exchanges import ExchangeFilters
from app.services.reads import (PAGE_LIMIT, domains_of, exchange_row, feed_dicts, feed_query, finite,
                                gate_dict, override_dict, run_or_404, student_names)
from opcod_core.dotted import get_path
from opcod_core.vocabulary import FINAL_RUN_STATUSES


class ExchangePageQuery(ExchangeFilters):
    """The exchanges page's query: the shared filters plus its keyset position (older than ``before``,
    or the live head: newer than ``after``)."""

    before: int | None = Field(None, ge=1, le=MAX_ID)
    after: int | None = Field(None, ge=0, le=MAX_ID)


def exchanges_page(sf: SessionFactory, run_id: int, filters: ExchangeFilters, before: int | None = None,
                   after: int | None = None, limit: int = PAGE_LIMIT) -> dict[str, Any]:
    """Keyset page newest-first (``id < before``), or the rows newer than ``after`` (live head)."""
    with session_scope(sf) as s:
        run = run_or_404(s, run_id)
        rows, more = keyset_page(s, feed_query(run_id).where(*filters.clauses()), Exchange.id,
                                 min(max(1, limit), 200), before=before, after=after, scalars=False)
        rows = feed_dicts(rows)
        return {"items": rows, "next_before": rows[-1]["id"] if more and rows and after is None else None,
                "top_id": max([r["id"] for r in rows] + [after or 0]) if after is not None else (
                    rows[0]["id"] if rows else 0),
                "last_event_id": s.scalar(select(func.max(Event.id)).where(Event.run_id == run_id)) or 0,
                "run": {"id": run.id, "name": run.name, "status": run.status, "final": run.status in FINAL_RUN_STATUSES,
                        "domains": domains_of(run.config or {}), "students": student_names(run),
                        "rounds": get_path(run.config or {}, "schedule.rounds")}}


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
        overrides = [override_dict(o) for o in s.scalars(
            select(Override).where(Override.exchange_id == ex.id).order_by(Override.id.desc()))]
        approval = s.scalars(select(Approval).where(Approval.run_id == ex.run_id,
                                                    Approval.exchange_key == ex.key)).first()
        labels = list(pr.labels or [])
        choices = list(pr.choices or [])
        return {
            "exchange": {**exchange_row(ex), "s_index": ex.s_index, "s_text": ex.s_text,
                         "teacher_context": ex.teacher_context, "origin_exchange_id": ex.origin_exchange_id,
                         "override_id": ex.override_id, "step_id": ex.step_id,
                         "n_tokens": len(ex.tokens or [])},
            "run": {"id": run.id, "name": run.name, "status": run.status, "final": run.status in FINAL_RUN_STATUSES,
                    "approval": get_path(run.config or {}, "tutor.approval"),
                    "context_mode": (run.config or {}).get("context_mode")},
            "prompt": {"id": pr.id, "item_key": pr.item_key, "domain": pr.domain, "split": pr.split,
                       "answer_type": pr.answer_type, "question": pr.question,
                       "choices": [{"label": labels[i] if i < len(labels) else chr(65 + i), "text": str(c),
                                    "gold": (labels[i] if i < len(labels) else chr(65 + i)) == pr.gold}
                                   for i, c in enumerate(choices)],
                       "gold": pr.gold},
            "rollout": {"id": ro.id, "student": ro.student, "text": ro.text, "answer": ro.answer,
                        "correct": ro.correct, "prompt_index": ro.prompt_index, "rollout_index": ro.rollout_index},
            "feedback": None if fb is None else _feedback_dict(fb),
            "other_feedback": [_feedback_dict(f) for f in ordered_feedback(ex) if f.id != ex.feedback_id],
            "route": None if ex.tutors is None else {"tutors": list(ex.tutors), "quarantined": list(ex.quarantined or []),
                                                     "reason": ex.route_reason},
            "gate": gate_dict(gate) if gate else None,
            "overrides": overrides,
            "pending_overrides": [o for o in overrides if o["status"] == "pending"],
            **_history(s, ex),
            "approval": None if approval is None else {"id": approval.id, "status": approval.status,
                                                       "text": approval.text, "deadline": approval.deadline},
            "tokens": list(ex.tokens or []),
            "divergence": ex.divergence,
            "divergence_s_only": ex.divergence_s_only,
            "has_tokens": bool(ex.tokens),
        }


def _feedback_dict(fb: Feedback) -> dict[str, Any]:
    return {"id": fb.id, "tutor": fb.tutor, "raw": fb.raw, "concept": fb.concept, "category": fb.category,
            "sanitised": fb.sanitised, "redactions": list(fb.redactions or []), "used_text": fb.used_text,
            "source": fb.source, "approval": fb.approval, "shadow": fb.shadow, "poisoned": fb.poisoned}


def _history(s, ex: Exchange) -> dict[str, Any]:
    """Where an exchange came from and what followed: the override that made it, the exchanges derived
    from it, its replays and the run's checkpoints a replay can use."""
    o = s.get(Override, ex.override_id) if ex.override_id is not None else None
    return {
        "provenance": override_dict(o) if o else None,
        "derived": list(s.scalars(select(Exchange.id).where(Exchange.origin_exchange_id == ex.id).order_by(Exchange.id))),
        "replays": [replay_view_from_row(r, ex.tokens) for r in s.scalars(
            select(Replay).where(Replay.exchange_id == ex.id).order_by(Replay.id.desc()).limit(10))],
        "checkpoints": [{"id": c.id, "tag": c.tag, "round": c.round} for c in s.scalars(
            select(Checkpoint).where(Checkpoint.run_id == ex.run_id).order_by(Checkpoint.id.desc()).limit(50))],
    }


def replay_view_from_row(r: Replay, tokens: list[Any] | None = None) -> dict[str, Any]:
    """A replay row as the page shows it: status, inputs and, when done, the per-token divergence before
    and after (``app.web.presenters`` draws them) and the teacher's answer distribution (labels with
    before/after probabilities)."""
    res = r.result or {}
    toks = res.get("tokens") or tokens
    before, after = res.get("before") or {}, res.get("after") or {}
    dist = []
    db, da = before.get("answer_distribution") or {}, after.get("answer_distribution") or {}
    for lab in list(dict.fromkeys([*db.keys(), *da.keys()])):
        pb, pa = finite(db.get(lab)), finite(da.get(lab))
        dist.append({"label": str(lab), "before": pb, "after": pa,
                     "before_pct": round(100 * (pb or 0.0), 1), "after_pct": round(100 * (pa or 0.0), 1)})
    gen = res.get("generated_feedback") or None
    done = r.status == "done"
    return {
        "id": r.id, "exchange_id": r.exchange_id, "status": r.status, "error": r.error,
        "inputs": dict(r.inputs or {}), "created_at": r.created_at, "finished_at": r.finished_at,
        "done": r.status in ("done", "failed"),
        "tokens": toks, "divergence_before": before.get("divergence") if done else None,
        "divergence_after": after.get("divergence") if done else None, "effect_values": res.get("effect") if done else None,
        "mean_before": finite(before.get("mean_divergence")), "mean_after": finite(after.get("mean_divergence")),
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


def approvals_queue(sf: SessionFactory, run_id: int, limit: int = 100) -> dict[str, Any]:
    """Pending approvals oldest first (the order the worker waits on them) plus the last decisions."""
    with session_scope(sf) as s:
        run = run_or_404(s, run_id)
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
                    "feedback_raw": p.get("feedback_raw"), "feedback": p.get("feedback_sanitised")}

        return {"run": {"id": run.id, "name": run.name, "status": run.status, "final": run.status in FINAL_RUN_STATUSES,
                        "approval": get_path(run.config or {}, "tutor.approval"),
                        "gating_mode": get_path(run.config or {}, "gating.mode"),
                        "timeout_s": get_path(run.config or {}, "tutor.approval_timeout_s"),
                        "default": get_path(run.config or {}, "tutor.approval_default")},
                "pending": [item(a) for a in pending], "decided": [item(a) for a in decided]}


def parse_run_ids(raw: str | None, max_runs: int = 8) -> list[int]:
    ids: list[int] = []
    for part in (raw or "").replace(" ", ",").split(","):
        if not part:
            continue
        if not (part.isascii() and part.isdigit()) or not 0 < int(part) <= MAX_ID:
            raise Invalid.field("runs", f"'{part[:20]}' is not a run id")
        if int(part) not in ids:
            ids.append(int(part))
    if len(ids) > max_runs:
        raise Invalid.field("runs", f"compare at most {max_runs} runs")
    return ids
