"""Helpers shared by the worker tests (test_worker_*.py): queue runs, wait with deadlines, read records.

No fixed sleeps: ``wait_for`` polls a condition until a deadline and fails with what it waited for.
``run_records`` reads a run's step and exchange records in a backend-independent, comparable form
(two runs' records must be equal exactly when the runs are the same computation).
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from sqlalchemy import func, select

from app.db import session_scope
from app.models import (BreakSample, EvalResult, Event, Exchange, Feedback, GateRecord, Metric, Prompt, Rollout, Run,
                        Step, Student)
from app.settings import Settings
from opcod_core.config import RunConfig, preset

#: Deadlines are generous: the machine running the suite may be shared and slow.
RUN_DEADLINE_S = 600


#: Kept feedback by construction, not by what a tiny tutor happens to sample: this tutor prefill closes a
#: concept pair naming "which", a word of 215 of the 348 built-in questions, so every feedback on such a
#: question is kept whatever the tutor writes after it (the first pair counts), and the seed's data order
#: (the same on every CPU) puts such questions in the first steps. For tests of what happens to kept feedback.
KEPT_PREFILL = "<concept>which</concept> "


def small_config(**over) -> RunConfig:
    """The tiny preset cut to 2 rounds x 2 steps per direction (8 steps), with nested ``over``."""
    return preset("tiny", {"schedule": {"rounds": 2, "steps_per_direction": 2}, **over})


def make_settings(tmp_path: Path, db_url: str, cache_dir: Path, **kw) -> Settings:
    base = dict(data_dir=tmp_path / "data", database_url=db_url, cache_dir=cache_dir, heartbeat_s=0.2,
                stale_after_s=5.0, poll_s=0.05, approval_poll_s=0.05)
    return Settings(**{**base, **kw})


def enqueue(factory, cfg: RunConfig, name: str = "run") -> int:
    """What the web side's create does: a queued run row and its two student rows."""
    with session_scope(factory) as s:
        K, R = cfg.schedule.steps_per_direction, cfg.schedule.rounds
        run = Run(name=name, preset=cfg.preset, config=cfg.to_dict(), status="queued", total_tasks=1 + R * (2 * K + 2))
        s.add(run)
        s.flush()
        for i, st in enumerate(cfg.students):
            s.add(Student(run_id=run.id, position=i, name=st.name, model_ref=st.model, strong_domain=st.strong_domain))
        s.add(Event(run_id=run.id, type="status", payload={"status": "queued"}))
        return run.id


def wait_for(predicate, timeout: float = RUN_DEADLINE_S, interval: float = 0.05, what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy (returned) or the deadline passes (fail)."""
    deadline = time.monotonic() + timeout
    stop = threading.Event()
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        stop.wait(interval)


def count(factory, model, *where) -> int:
    with factory() as s:
        return s.scalar(select(func.count()).select_from(model).where(*where)) or 0


def get_run(factory, run_id: int) -> Run:
    with factory() as s:
        return s.get(Run, run_id)


def jsonl_events(settings: Settings, run_id: int) -> list[dict]:
    path = settings.runs_dir / str(run_id) / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def _no_times(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if not k.startswith(("time/", "throughput/"))}


def run_records(factory, run_id: int) -> dict:
    """Steps, exchanges (with rollout, prompt and feedback), gates, evals, break samples and metrics of
    a run, keyed by what identifies them and without ids or timestamps."""
    with factory() as s:
        steps = [(st.global_step, st.round, st.direction, st.step, st.tutee, st.tutor, st.loss, _no_times(st.metrics))
                 for st in s.scalars(select(Step).where(Step.run_id == run_id).order_by(Step.global_step))]
        exchanges = []
        q = (select(Exchange, Rollout, Prompt, Feedback)
             .join(Rollout, Rollout.id == Exchange.rollout_id).join(Prompt, Prompt.id == Rollout.prompt_id)
             .outerjoin(Feedback, Feedback.id == Exchange.feedback_id)
             .where(Exchange.run_id == run_id).order_by(Exchange.global_step, Exchange.key))
        for x, r, p, fb in s.execute(q):
            exchanges.append({
                "key": x.key, "round": x.round, "direction": x.direction, "global_step": x.global_step,
                "tutee": x.tutee, "tutor": x.tutor, "domain": x.domain, "prompt": p.item_key,
                "question": p.question, "text": r.text, "token_ids": r.token_ids, "answer": r.answer,
                "correct": r.correct, "category": x.category, "s_index": x.s_index, "s_text": x.s_text,
                "context_used": x.context_used, "skipped": x.skipped, "teacher_context": x.teacher_context,
                "tokens": x.tokens, "loss": x.loss, "divergence": x.divergence,
                "divergence_s_only": x.divergence_s_only, "student_logprob": x.student_logprob,
                "human_edited": x.human_edited,
                "feedback": None if fb is None else (fb.raw, fb.concept, fb.category, fb.sanitised, fb.used_text,
                                                     fb.source, fb.approval)})
        gates = sorted((g.round, g.student, g.decision, g.delta, g.tau, g.mode, json.dumps(g.scores, sort_keys=True),
                        g.source, g.note or "") for g in s.scalars(select(GateRecord).where(GateRecord.run_id == run_id)))
        evals = sorted((e.round, e.student, e.domain, e.accuracy, e.k)
                       for e in s.scalars(select(EvalResult).where(EvalResult.run_id == run_id)))
        breaks = sorted((b.global_step, b.exchange_key, b.broken, b.correct_without_f, b.correct_with_f)
                        for b in s.scalars(select(BreakSample).where(BreakSample.run_id == run_id)))
        metrics = sorted((m.global_step, m.key) for m in s.scalars(select(Metric).where(Metric.run_id == run_id))
                         if not m.key.startswith(("time/", "throughput/")))
        metric_values = sorted((m.global_step, m.key, m.value) for m in s.scalars(
            select(Metric).where(Metric.run_id == run_id)) if not m.key.startswith(("time/", "throughput/")))
    return {"steps": steps, "exchanges": exchanges, "gates": gates, "evals": evals, "breaks": breaks,
            "metrics": metrics, "metric_values": metric_values}


def event_types(factory, run_id: int, exclude=("status",)) -> list[tuple[int, str, int | None]]:
    with factory() as s:
        return [(e.id, e.type, e.ref_id) for e in s.scalars(select(Event).where(Event.run_id == run_id)
                                                             .order_by(Event.id)) if e.type not in exclude]


def start_thread(target, **kwargs) -> threading.Thread:
    t = threading.Thread(target=target, kwargs=kwargs, daemon=True)
    t.start()
    return t
