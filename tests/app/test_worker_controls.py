"""Controls through the database while a worker trains (in-process, in a thread): pause, resume,
cancel, shutdown, run-level and exchange-level overrides, manual approvals (decided and timed out),
and replays served by the run's own worker and by an idle worker."""

from __future__ import annotations


import pytest
from sqlalchemy import select, update

import worker_support as ws

from app.db import make_engine, session_factory, session_scope, upgrade
from app.models import (Approval, Checkpoint, Event, Exchange, Feedback, GateRecord, Override, Replay, Run,
                        Step)
from app.types import utcnow
from app.worker.loop import Worker

pytestmark = pytest.mark.slow

EDIT_TEXT = "Think about the element sodium."


@pytest.fixture
def env(tmp_path, tiny_cache):
    url = f"sqlite:///{tmp_path / 'db' / 'opcod.db'}"
    upgrade(url)
    eng = make_engine(url)
    yield session_factory(eng), ws.make_settings(tmp_path, url, tiny_cache), eng
    eng.dispose()


def _steps(factory, rid) -> list[int]:
    with factory() as s:
        return list(s.scalars(select(Step.global_step).where(Step.run_id == rid).order_by(Step.global_step)))


def _request(factory, rid, action):
    with session_scope(factory) as s:
        assert s.execute(update(Run).where(Run.id == rid, Run.status == "running")
                         .values(requested_action=action)).rowcount == 1


def _in_thread(worker):
    return ws.start_thread(worker.run, once=True)


def _join(thread, what):
    ws.wait_for(lambda: not thread.is_alive(), what=what)


def test_pause_overrides_replays_and_resume(env):
    factory, settings, eng = env
    rid = ws.enqueue(factory, ws.small_config())
    worker = Worker(settings, engine=eng)
    thread = _in_thread(worker)
    try:
        ws.wait_for(lambda: _steps(factory, rid), what="the first step row")
        with factory() as s:
            first = s.scalars(select(Exchange).where(Exchange.run_id == rid, Exchange.global_step == 0)
                              .order_by(Exchange.id)).first()
        with session_scope(factory) as s:  # served by the run's own worker at the next step boundary
            s.add(Replay(run_id=rid, exchange_id=first.id, inputs={"feedback": EDIT_TEXT}, status="queued"))
        _request(factory, rid, "pause")
        _join(thread, "the worker to pause the run")
    finally:
        worker.request_stop()
        thread.join(timeout=60)
    assert worker.processed == [(rid, "paused")]
    run = ws.get_run(factory, rid)
    assert (run.status, run.requested_action, run.worker_id) == ("paused", None, None)
    paused_at = len(_steps(factory, rid))            # the step the trainer stopped in front of
    assert _steps(factory, rid) == list(range(paused_at)) and paused_at < 8
    with factory() as s:
        ck = s.scalars(select(Checkpoint).where(Checkpoint.run_id == rid).order_by(Checkpoint.id.desc())).first()
        assert ck.next_task == run.next_task
        rp = s.scalars(select(Replay).where(Replay.run_id == rid)).one()
        assert rp.status == "done" and rp.worker_id == worker.worker_id
        assert len(rp.result["after"]["divergence"]) == len(first.tokens) and rp.result["after"]["feedback"] == EDIT_TEXT

    # while paused: an exchange edit, a run-level override and one that cannot apply
    with session_scope(factory) as s:
        edit = Override(run_id=rid, exchange_id=first.id, kind="edit", payload={"text": EDIT_TEXT}, author="ada")
        tau = Override(run_id=rid, kind="set_tau", payload={"value": 0.5}, author="ada")
        bogus = Override(run_id=rid, kind="mute_tutor", payload={"student": "nobody"}, author="ada")
        s.add_all([edit, tau, bogus])
        s.flush()
        ids = edit.id, tau.id, bogus.id
        s.execute(update(Run).where(Run.id == rid).values(status="queued"))   # what the resume service does
    again = Worker(settings, engine=eng)
    assert again.run(once=True) == 0
    assert again.processed == [(rid, "finished")]
    assert _steps(factory, rid) == list(range(8))
    with factory() as s:
        edit, tau, bogus = (s.get(Override, i) for i in ids)
        assert (tau.status, tau.applied_at_step) == ("applied", paused_at) and tau.applied_at is not None
        assert (edit.status, edit.applied_at_step) == ("applied", paused_at)
        assert bogus.status == "rejected" and bogus.applied_at_step is None
        regate = s.scalars(select(GateRecord).where(GateRecord.run_id == rid, GateRecord.note == "override")).all()
        assert regate and {g.tau for g in regate} == {0.5}
        human = s.scalars(select(Exchange).where(Exchange.run_id == rid, Exchange.override_id == edit.id)).one()
        assert human.human_edited and human.origin_exchange_id == first.id and human.tutee == first.tutee
        assert human.global_step >= paused_at and EDIT_TEXT in human.teacher_context
        fb = s.get(Feedback, human.feedback_id)
        assert (fb.source, fb.used_text) == ("human", EDIT_TEXT)
        keys = s.scalars(select(Exchange.key).where(Exchange.run_id == rid)).all()
        assert len(keys) == len(set(keys))
        statuses = [e.payload["status"] for e in s.scalars(select(Event).where(
            Event.run_id == rid, Event.type == "status").order_by(Event.id))]
        assert statuses == ["queued", "running", "paused", "running", "finished"]

    # a replay of the finished run, served by an idle worker from the latest checkpoint
    with session_scope(factory) as s:
        rp = Replay(run_id=rid, exchange_id=human.id, inputs={"feedback": "Consider the periodic table."},
                    status="queued")
        s.add(rp)
        s.flush()
        rp_id = rp.id
    idle = Worker(settings, engine=eng)
    assert idle.run(once=True) == 0 and idle.processed == []
    with factory() as s:
        rp = s.get(Replay, rp_id)
        assert rp.status == "done" and rp.worker_id == idle.worker_id and rp.finished_at is not None
        res = rp.result
        assert len(res["before"]["divergence"]) == len(res["after"]["divergence"]) == len(human.tokens)
        assert res["before"]["feedback"] == EDIT_TEXT and res["after"]["feedback"] == "Consider the periodic table."
        assert abs(sum(res["after"]["answer_distribution"].values()) - 1) < 1e-4
        assert s.scalars(select(Event).where(Event.run_id == rid, Event.type == "replay",
                                             Event.ref_id == rp_id)).one().payload["status"] == "done"


def test_shutdown_requeues_then_cancel(env):
    factory, settings, eng = env
    rid = ws.enqueue(factory, ws.small_config())
    worker = Worker(settings, engine=eng)
    thread = ws.start_thread(worker.run)          # a long-running worker, not --once
    try:
        ws.wait_for(lambda: _steps(factory, rid), what="the first step row")
        worker.request_stop()                     # what SIGTERM does
        _join(thread, "the worker to stop")
    finally:
        worker.request_stop()
        thread.join(timeout=60)
    run = ws.get_run(factory, rid)
    assert worker.processed == [(rid, "shutdown")]
    assert (run.status, run.worker_id) == ("queued", None) and run.progress["paused_by"] == "shutdown"
    done = len(_steps(factory, rid))

    second = Worker(settings, engine=eng)
    thread = _in_thread(second)
    try:
        ws.wait_for(lambda: len(_steps(factory, rid)) > done, what="a step after the restart")
        _request(factory, rid, "cancel")
        _join(thread, "the worker to cancel the run")
    finally:
        second.request_stop()
        thread.join(timeout=60)
    run = ws.get_run(factory, rid)
    assert second.processed == [(rid, "cancelled")]
    assert (run.status, run.requested_action, run.worker_id) == ("cancelled", None, None)
    assert run.finished_at is not None and run.summary is None
    steps = _steps(factory, rid)
    assert steps == list(range(len(steps))) and len(steps) < 8


def _manual(**tutor):
    return ws.small_config(schedule={"rounds": 1, "steps_per_direction": 1}, gating={"mode": "always"},
                           tutor={"approval": "manual", "prefill": ws.KEPT_PREFILL, **tutor})


def test_manual_approval_waits_for_human_decisions(env):
    factory, settings, eng = env
    rid = ws.enqueue(factory, _manual(approval_timeout_s=600, approval_default="reject"))
    decided: dict[str, str] = {}
    choices = ["edited", "rejected", "approved"]

    def pending():
        with factory() as s:
            return s.scalars(select(Approval).where(Approval.run_id == rid, Approval.status == "pending")
                             .order_by(Approval.id)).all()

    def decide(limit=None):
        with session_scope(factory) as s:
            rows = s.scalars(select(Approval).where(Approval.run_id == rid, Approval.status == "pending")
                             .order_by(Approval.id)).all()
            for a in rows[:limit]:
                status = choices[len(decided) % 3]
                a.status, a.decided_by, a.decided_at = status, "ada", utcnow()
                a.text = EDIT_TEXT if status == "edited" else None
                decided[a.exchange_key] = status

    # 1. the worker waits for a human; pausing the run interrupts the wait (the step is abandoned)
    worker = Worker(settings, engine=eng)
    thread = _in_thread(worker)
    try:
        waiting = ws.wait_for(pending, what="approval rows waiting for a human")
        assert len(waiting) >= 2, "the prefill keeps every feedback on a question with 'which'"
        _request(factory, rid, "pause")
        _join(thread, "the worker to pause while waiting for approvals")
    finally:
        worker.request_stop()
        thread.join(timeout=60)
    assert worker.processed == [(rid, "paused")]
    assert ws.get_run(factory, rid).status == "paused"
    assert [a.exchange_key for a in pending()] == [a.exchange_key for a in waiting]
    decide(limit=1)                          # a human decides one of them while the run is paused

    # 2. resumed: the step is redone, finds that decision, waits for the others
    with session_scope(factory) as s:
        s.execute(update(Run).where(Run.id == rid).values(status="queued"))
    worker = Worker(settings, engine=eng)
    thread = _in_thread(worker)
    try:
        def decide_until_done():
            decide()
            return not thread.is_alive()

        ws.wait_for(decide_until_done, what="the run to finish while a human decides")
    finally:
        worker.request_stop()
        thread.join(timeout=60)
    assert worker.processed == [(rid, "finished")]
    assert len(decided) >= 2, "kept feedback must wait for a human"
    with factory() as s:
        approvals = s.scalars(select(Approval).where(Approval.run_id == rid)).all()
        assert {a.exchange_key: a.status for a in approvals} == decided
        assert all(a.payload["key"] == a.exchange_key and a.deadline is not None for a in approvals)
        for key, status in decided.items():
            x = s.scalars(select(Exchange).where(Exchange.run_id == rid, Exchange.key == key)).one()
            fb = s.get(Feedback, x.feedback_id)
            assert fb.category == "kept"
            if status == "approved":
                assert fb.approval == "approve" and fb.used_text == fb.sanitised and fb.source == "model"
            elif status == "rejected":
                assert fb.approval == "reject" and fb.used_text is None
            else:
                assert fb.approval == "edit" and fb.used_text == EDIT_TEXT and fb.source == "human"
                assert x.human_edited and EDIT_TEXT in x.teacher_context
        assert len(s.scalars(select(Event).where(Event.run_id == rid, Event.type == "approval")).all()) == len(decided)
        assert len(s.scalars(select(Step).where(Step.run_id == rid)).all()) == 2


def test_manual_approval_timeout_takes_the_default(env):
    factory, settings, eng = env
    rid = ws.enqueue(factory, _manual(approval_timeout_s=0, approval_default="reject"))
    worker = Worker(settings, engine=eng)
    assert worker.run(once=True) == 0
    assert worker.processed == [(rid, "finished")]
    with factory() as s:
        approvals = s.scalars(select(Approval).where(Approval.run_id == rid)).all()
        assert approvals and {a.status for a in approvals} == {"timed_out"}
        assert {a.decided_by for a in approvals} == {"timeout"}
        for a in approvals:
            x = s.scalars(select(Exchange).where(Exchange.run_id == rid, Exchange.key == a.exchange_key)).one()
            fb = s.get(Feedback, x.feedback_id)
            assert fb.approval == "reject" and fb.used_text is None
