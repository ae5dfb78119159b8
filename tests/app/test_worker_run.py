"""A worker trains tiny runs in-process, on SQLite and PostgreSQL: what it stores equals what the
trainer reported, and a worker that dies right after writing a step (before that step's checkpoint)
is replaced by one that undoes those rows, re-applies the override it had applied, and ends with
records equal to an uninterrupted run's."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import select, update

import worker_support as ws

from app.db import make_engine, session_factory, session_scope
from app.models import (BreakSample, Checkpoint, EvalResult, Event, Exchange, Feedback, GateRecord, Metric,
                        Override, Rollout, Run, Step)
from app.types import utcnow
from app.worker.loop import Worker
from app.worker.recorder import Recorder

pytestmark = pytest.mark.slow

STORED = ("run_start", "resume", "gate", "exchange", "break", "step", "eval", "checkpoint", "override", "replay")


SAME_TAU = ws.small_config().gating.tau


class Crash(BaseException):
    """Stands for the process dying: not an Exception, so the worker does not handle it."""


class CrashingRecorder(Recorder):
    """Queues a run-level override after step 2 (so it is applied at step 3), then "dies" right after
    step 3's transaction, before the checkpoint that follows it is written."""

    def on_event(self, event):
        super().on_event(event)
        if event.type == "step" and event.global_step == 2:
            with session_scope(self.factory) as s:
                # the config's own tau: the override is applied and re-gates, but decides as before, so the
                # resumed run must equal the uninterrupted one
                s.add(Override(run_id=self.run_id, kind="set_tau", payload={"value": SAME_TAU}, author="test"))
        if event.type == "step" and event.global_step == 3:
            raise Crash()


def check_against_trainer_events(factory, settings, rid):
    """The stored rows of a finished run against the trainer's own events (events.jsonl)."""
    events = ws.jsonl_events(settings, rid)
    by = Counter(e["type"] for e in events)
    run = ws.get_run(factory, rid)
    finish = events[-1]
    assert finish["type"] == "finish" and finish["status"] == "finished"
    assert run.status == "finished" and run.summary == finish["summary"] and run.worker_id is None
    assert run.finished_at is not None and run.requested_action is None and run.error is None
    assert run.next_task == run.total_tasks == 1 + 2 * (2 * 2 + 2)
    assert run.progress == {"round": 2, "direction": 2, "step": 1, "global_step": 7}

    steps = [e for e in events if e["type"] == "step"]
    with factory() as s:
        rows = s.scalars(select(Step).where(Step.run_id == rid).order_by(Step.global_step)).all()
        assert [r.global_step for r in rows] == [e["global_step"] for e in steps] == list(range(8))
        for r, e in zip(rows, steps, strict=True):
            assert (r.round, r.direction, r.step, r.tutee, r.tutor) == (
                e["round"], e["direction"], e["step"], e["tutee"], e["tutor"])
            assert r.loss == pytest.approx(e["loss"])
            metric_keys = set(s.scalars(select(Metric.key).where(Metric.run_id == rid,
                                                                 Metric.global_step == r.global_step)))
            assert metric_keys == set(e["metrics"]) and metric_keys
        exchanges = {x.key: x for x in s.scalars(select(Exchange).where(Exchange.run_id == rid))}
        ev_ex = {e["key"]: e for e in events if e["type"] == "exchange"}
        assert set(exchanges) == set(ev_ex) and len(exchanges) == by["exchange"]
        assert s.get(Run, rid).exchange_count == len(exchanges)  # the stored count, also after an undo
        for r in rows:  # each step's stored mean divergence of its exchanges that trained
            trained = [x.loss for x in exchanges.values() if x.step_id == r.id and not x.skipped and x.loss is not None]
            assert r.exchange_divergence == (pytest.approx(sum(trained) / len(trained)) if trained else None)
        for key, e in ev_ex.items():
            x = exchanges[key]
            ro = s.get(Rollout, x.rollout_id)
            assert ro.token_ids == e["token_ids"] and ro.text == e["rollout_text"] and ro.correct == e["correct"]
            assert (x.global_step, x.category, x.context_used, x.tokens, x.finish_reason) == (
                e["global_step"], e["category"], e["context_used"], e["tokens"], e["finish_reason"])
            assert x.finish_reason in ("eos", "stop", "length")
            assert x.divergence == pytest.approx(e["divergence"], rel=1e-6, abs=1e-6)
            assert (x.feedback_id is not None) == (e["feedback_raw"] is not None)
            if x.feedback_id is not None:
                fb = s.get(Feedback, x.feedback_id)
                assert (fb.raw, fb.category, fb.used_text) == (e["feedback_raw"], e["category"], e["feedback_used"])
        gates = sorted((g.round, g.student, g.decision) for g in s.scalars(select(GateRecord).where(GateRecord.run_id == rid)))
        assert gates == sorted((e["round"], e["student"], e["decision"]) for e in events if e["type"] == "gate")
        evals = sorted((v.round, v.student, v.domain, v.accuracy) for v in s.scalars(
            select(EvalResult).where(EvalResult.run_id == rid)))
        assert evals == sorted((e["round"], e["student"], e["domain"], e["accuracy"]) for e in events if e["type"] == "eval")
    assert ws.count(factory, BreakSample, BreakSample.run_id == rid) == by["break"]
    assert ws.count(factory, Checkpoint, Checkpoint.run_id == rid) == by["checkpoint"]
    # one event row per stored trainer event, in the trainer's order, each pointing at its row
    stream = ws.event_types(factory, rid)
    assert [t for _, t, _ in stream] == [e["type"] for e in events if e["type"] in STORED]
    assert [i for i, _, _ in stream] == sorted(i for i, _, _ in stream)
    assert all(ref is not None for _, t, ref in stream if t not in ("run_start", "resume"))
    with factory() as s:
        statuses = [e.payload["status"] for e in s.scalars(select(Event).where(
            Event.run_id == rid, Event.type == "status").order_by(Event.id))]
    return statuses


def test_worker_runs_a_tiny_run_and_a_crashed_one_resumes_exactly(db_url, tmp_path, tiny_cache):
    eng = make_engine(db_url)
    factory = session_factory(eng)
    settings = ws.make_settings(tmp_path, db_url, tiny_cache)
    cfg = ws.small_config()
    try:
        # 1. an uninterrupted run: rows equal the trainer's events
        ref = ws.enqueue(factory, cfg, "reference")
        worker = Worker(settings, engine=eng)
        assert worker.process_next()
        worker.close()
        assert worker.processed == [(ref, "finished")]
        assert check_against_trainer_events(factory, settings, ref) == ["queued", "running", "finished"]
        ref_ckpts = settings.runs_dir / str(ref) / "checkpoints"
        assert any(ref_ckpts.glob("*/*/model")) and not list(ref_ckpts.glob("*/*/optimizer.pt"))  # over: weights only

        # 2. the same config; the worker "dies" right after step 3's transaction
        rid = ws.enqueue(factory, cfg, "crashed")
        crashing = Worker(settings, engine=eng, recorder_cls=CrashingRecorder)
        with pytest.raises(Crash):
            crashing.process_next()
        crashing.close()
        with factory() as s:
            run = s.get(Run, rid)
            assert run.status == "running" and run.worker_id == crashing.worker_id
            assert s.scalars(select(Step.global_step).where(Step.run_id == rid).order_by(Step.global_step)).all() == [0, 1, 2, 3]
            undone_step = s.scalars(select(Step.id).where(Step.run_id == rid, Step.global_step == 3)).one()
            undone_event = s.scalars(select(Event.id).where(Event.run_id == rid, Event.type == "step",
                                                            Event.ref_id == undone_step)).one()
            ov = s.scalars(select(Override).where(Override.run_id == rid)).one()
            assert (ov.status, ov.applied_at_step) == ("applied", 3)
        with session_scope(factory) as s:  # its heartbeat goes stale (without waiting for it)
            s.execute(update(Run).where(Run.id == rid).values(heartbeat_at=utcnow() - timedelta(hours=1)))

        # 3. another worker takes it over and finishes it
        taker = Worker(settings, engine=eng)
        assert taker.run(once=True) == 0
        assert taker.processed == [(rid, "finished")]
        statuses = check_against_trainer_events(factory, settings, rid)
        assert statuses == ["queued", "running", "running", "finished"]
        with factory() as s:
            # step 3 as first written was undone and redone (SQLite may reuse the row id, never the event id)
            assert s.get(Event, undone_event) is None
            assert len(s.scalars(select(Event).where(Event.run_id == rid, Event.type == "step")).all()) == 8
            ov = s.scalars(select(Override).where(Override.run_id == rid)).one()
            assert (ov.status, ov.applied_at_step) == ("applied", 3)
            applied = s.scalars(select(Event).where(Event.run_id == rid, Event.type == "override")).all()
            assert [e.ref_id for e in applied] == [ov.id]
            regated = s.scalars(select(GateRecord).where(GateRecord.run_id == rid, GateRecord.note == "override")).all()
            assert len(regated) == 2 and {g.tau for g in regated} == {SAME_TAU}
        a, b = ws.run_records(factory, ref), ws.run_records(factory, rid)
        assert a["steps"] == b["steps"] and a["exchanges"] == b["exchanges"]
        assert a["evals"] == b["evals"] and a["breaks"] == b["breaks"] and a["metric_values"] == b["metric_values"]
        assert [g for g in b["gates"] if g[-1] != "override"] == a["gates"]
    finally:
        eng.dispose()
