"""Claiming runs (atomic, stale takeover), heartbeats, the ownership fence and failing runs, on
SQLite and PostgreSQL. No training here: these are fast."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from sqlalchemy import select, update

import worker_support as ws
from seed import seed_run as ws_seed

from app.db import make_engine, session_factory, session_scope
from app.models import Event, Run, Worker as WorkerRow
from app.types import utcnow
from app.worker.claim import (Heartbeat, RunLost, candidates, claim_next, fence, register_worker,
                              try_claim)


@pytest.fixture
def factory(db_url):
    eng = make_engine(db_url)
    yield session_factory(eng)
    eng.dispose()


def _run(factory, status="queued", heartbeat_age_s: float | None = None, worker_id=None) -> int:
    with session_scope(factory) as s:
        hb = None if heartbeat_age_s is None else utcnow() - timedelta(seconds=heartbeat_age_s)
        r = Run(name="r", config={}, status=status, heartbeat_at=hb, worker_id=worker_id)
        s.add(r)
        s.flush()
        return r.id


def test_two_claims_of_one_queued_run_have_one_winner(factory):
    rid = _run(factory)
    w1, w2 = register_worker(factory, "one"), register_worker(factory, "two")
    with factory() as s:
        seen = candidates(s, stale_after_s=30)
    assert [c.id for c in seen] == [rid]
    # both saw the same snapshot; they claim one after the other
    with session_scope(factory) as s:
        first = try_claim(s, seen[0], w1)
    with session_scope(factory) as s:
        second = try_claim(s, seen[0], w2)
    assert (first, second) == (True, False)
    run = ws.get_run(factory, rid)
    assert run.status == "running" and run.worker_id == w1 and run.heartbeat_at is not None
    assert run.started_at is not None
    assert ws.count(factory, Event, Event.run_id == rid, Event.type == "status") == 1


def test_concurrent_claimers_one_run_exactly_one_wins(factory):
    rid = _run(factory)
    workers = [register_worker(factory, f"w{i}") for i in range(4)]
    barrier = threading.Barrier(len(workers))
    results: dict[int, object] = {}

    def claim(wid):
        barrier.wait()
        results[wid] = claim_next(factory, wid, stale_after_s=30)

    threads = [threading.Thread(target=claim, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    winners = [w for w, c in results.items() if c is not None]
    assert len(results) == 4 and len(winners) == 1
    assert results[winners[0]].id == rid and ws.get_run(factory, rid).worker_id == winners[0]


def test_stale_running_runs_are_claimable_fresh_ones_are_not(factory):
    dead = register_worker(factory, "dead")
    alive = register_worker(factory, "alive")
    fresh = _run(factory, "running", heartbeat_age_s=0.5, worker_id=alive)
    stale = _run(factory, "running", heartbeat_age_s=3600, worker_id=dead)
    _run(factory, "paused")
    _run(factory, "finished")
    with factory() as s:
        assert [c.id for c in candidates(s, stale_after_s=30)] == [stale]
    me = register_worker(factory, "me")
    got = claim_next(factory, me, stale_after_s=30)
    assert got is not None and got.id == stale and got.taken_over
    assert claim_next(factory, me, stale_after_s=30) is None
    assert ws.get_run(factory, fresh).worker_id == alive
    with factory() as s:
        ev = s.scalars(select(Event).where(Event.run_id == stale, Event.type == "status")).one()
    assert ev.payload["taken_over"] is True and ev.payload["previous_worker_id"] == dead


def test_heartbeat_refreshes_and_detects_a_lost_run(factory):
    wid = register_worker(factory, "hb")
    rid = _run(factory)
    assert claim_next(factory, wid, stale_after_s=30).id == rid
    before = ws.get_run(factory, rid).heartbeat_at
    hb = Heartbeat(factory, wid, interval=0.05)
    hb.hold(rid)
    hb.start()
    try:
        ws.wait_for(lambda: ws.get_run(factory, rid).heartbeat_at > before, 30, what="a heartbeat")
        with factory() as s:
            assert s.get(WorkerRow, wid).status == "busy"
        other = register_worker(factory, "other")
        with session_scope(factory) as s:  # another worker took the run over
            s.execute(update(Run).where(Run.id == rid).values(worker_id=other))
        ws.wait_for(hb.lost.is_set, 30, what="the heartbeat to notice the takeover")
        with pytest.raises(RunLost):
            with session_scope(factory) as s:
                fence(s, rid, wid)
    finally:
        hb.stop()


def test_a_failing_run_is_marked_failed_and_the_worker_goes_on(db_url, tmp_path):
    from app.worker.loop import Worker

    eng = make_engine(db_url)
    factory = session_factory(eng)
    bad_config = _run(factory)
    with session_scope(factory) as s:
        s.execute(update(Run).where(Run.id == bad_config).values(config={"rollout": {"n": 0}}))
    bad_data = ws.enqueue(factory, ws.small_config(data={"source": "jsonl", "path": str(tmp_path / "missing.jsonl")}))
    worker = Worker(ws.make_settings(tmp_path, db_url, tmp_path / "cache"), engine=eng)
    assert worker.run(once=True) == 0
    assert worker.processed == [(bad_config, "failed"), (bad_data, "failed")]
    for rid in (bad_config, bad_data):
        run = ws.get_run(factory, rid)
        assert run.status == "failed" and run.worker_id is None and run.finished_at is not None
        assert run.error and "Error" in run.error.splitlines()[0]
    assert "rollout" in ws.get_run(factory, bad_config).error
    with factory() as s:
        assert s.scalars(select(WorkerRow.status)).all() == ["stopped"]
    eng.dispose()


def test_a_run_whose_workers_keep_dying_is_failed_clearly(factory):
    """A poison run (it kills every worker that runs it) is taken over at most ``max_takeovers`` times,
    then failed with an error that says why; a person's resume gives it a fresh count."""
    from app.services.runs import resume_run

    rid = _run(factory)
    for attempt in range(3):
        wid = register_worker(factory, f"w{attempt}")
        got = claim_next(factory, wid, stale_after_s=30, max_takeovers=2)
        assert got is not None and got.id == rid and got.taken_over == (attempt > 0)
        assert ws.get_run(factory, rid).takeovers == attempt
        with session_scope(factory) as s:  # the worker dies: its heartbeat goes stale
            s.execute(update(Run).where(Run.id == rid).values(heartbeat_at=utcnow() - timedelta(seconds=60)))
    last = register_worker(factory, "last")
    assert claim_next(factory, last, stale_after_s=30, max_takeovers=2) is None
    run = ws.get_run(factory, rid)
    assert run.status == "failed" and run.worker_id is None and "died 3 times" in run.error
    assert "OPCOD_MAX_TAKEOVERS" in run.error and run.takeovers == 2
    with factory() as s:
        ev = s.scalars(select(Event).where(Event.run_id == rid, Event.type == "status")
                       .order_by(Event.id.desc())).first()
    assert ev.payload["status"] == "failed"
    resume_run(factory, rid)
    assert ws.get_run(factory, rid).takeovers == 0
    assert claim_next(factory, last, stale_after_s=30, max_takeovers=2).id == rid


def test_replays_of_a_dead_worker_are_requeued(factory):
    """A replay left ``running`` by a worker that died (stale heartbeat) or stopped goes back to the queue
    before an idle worker claims; one held by a live worker stays with it."""
    from app.models import Replay
    from app.worker.replays import claim_idle_replay

    seeded = ws_seed(factory, status="finished")
    rid, exchanges = seeded.run_id, seeded.exchange_ids
    dead, stopped, alive = (register_worker(factory, n) for n in ("dead", "stopped", "alive"))
    with session_scope(factory) as s:
        s.execute(update(WorkerRow).where(WorkerRow.id == dead).values(heartbeat_at=utcnow() - timedelta(seconds=120)))
        s.execute(update(WorkerRow).where(WorkerRow.id == stopped).values(status="stopped"))
        rows = [Replay(run_id=rid, exchange_id=exchanges[0], inputs={}, status="running", worker_id=w,
                       started_at=utcnow()) for w in (dead, stopped, alive)]
        s.add_all(rows)
        s.flush()
        ids = [r.id for r in rows]
    me = register_worker(factory, "me")
    assert claim_idle_replay(factory, me, stale_after_s=30) == ids[0]  # the oldest requeued one, claimed
    with factory() as s:
        got = {r.id: (r.status, r.worker_id) for r in s.scalars(select(Replay))}
    assert got == {ids[0]: ("running", me), ids[1]: ("queued", None), ids[2]: ("running", alive)}


def test_a_step_boundary_serves_at_most_k_replays(factory, tmp_path):
    """The run's own worker takes at most ``max_replays`` queued replays per step boundary, oldest first."""
    from app.models import Replay
    from app.worker.controls import DBControls

    seeded = ws_seed(factory)
    rid = seeded.run_id
    wid = register_worker(factory, "trainer")
    with session_scope(factory) as s:
        s.execute(update(Run).where(Run.id == rid).values(status="running", worker_id=wid, heartbeat_at=utcnow()))
        s.add_all([Replay(run_id=rid, exchange_id=seeded.exchange_ids[0], inputs={"feedback": str(i)},
                          status="queued") for i in range(5)])
    controls = DBControls(factory, rid, wid, students=["chem", "phys"], out_dir=tmp_path, stop=threading.Event(),
                          max_replays=2)
    served = []
    for _ in range(3):
        served.append([r.feedback for r in controls.poll({}).replays])
    assert served == [["0", "1"], ["2", "3"], ["4"]]


def test_a_worker_that_lost_its_run_writes_no_checkpoint(factory, tmp_path):
    """After a takeover, the old holder's trainer must not write into the directory the new holder resumes
    from: ``WorkerTrainer.save_checkpoint`` checks the fence before anything touches the disk."""
    from app.worker.recorder import Recorder
    from app.worker.trainer import WorkerTrainer
    from opcod_core.checkpoint import checkpoint_root

    old, new = register_worker(factory, "old"), register_worker(factory, "new")
    rid = _run(factory, status="running", heartbeat_age_s=0, worker_id=new)  # taken over by ``new``
    trainer = WorkerTrainer.__new__(WorkerTrainer)  # only the save path matters: no students needed
    trainer.recorder = Recorder(factory, rid, old, tmp_path)
    with pytest.raises(RunLost):
        trainer.save_checkpoint()
    assert not checkpoint_root(tmp_path).exists()


def test_a_stalled_trainer_stops_its_runs_heartbeat(factory):
    """A worker whose trainer reports nothing for ``stall_after_s`` stops refreshing its run, so the run goes
    stale and another worker takes it over; progress resumes the refresh."""
    wid = register_worker(factory, "stuck")
    rid = _run(factory)
    assert claim_next(factory, wid, stale_after_s=30).id == rid
    hb = Heartbeat(factory, wid, interval=3600, stall_after_s=60)
    hb.hold(rid)
    with session_scope(factory) as s:
        s.execute(update(Run).where(Run.id == rid).values(heartbeat_at=utcnow() - timedelta(seconds=45)))
    hb.last_progress -= 61                      # nothing reported for 61 s
    hb.beat()
    assert hb.stalled and (utcnow() - ws.get_run(factory, rid).heartbeat_at).total_seconds() >= 45
    with factory() as s:
        assert [c.id for c in candidates(s, stale_after_s=30)] == [rid]   # another worker may take it over
    hb.progressed()
    hb.beat()
    assert not hb.stalled and (utcnow() - ws.get_run(factory, rid).heartbeat_at).total_seconds() < 5
