"""A worker that cannot read a run's checkpoints (a host without the shared runs directory) must not
restart it from scratch, which erases every recorded row: the run is failed with an error that says why,
and its rows stay. Before, the takeover silently wiped them."""

from __future__ import annotations

from sqlalchemy import update

import worker_support as ws
from seed import seed_run

from app.db import make_engine, session_factory, session_scope
from app.models import Checkpoint, Exchange, Run, Step
from app.worker.loop import Worker


def test_unreadable_checkpoints_fail_the_run_and_keep_its_rows(db_url, tmp_path, tiny_cache):
    eng = make_engine(db_url)
    factory = session_factory(eng)
    seeded = seed_run(factory, steps=2, per_step=3)
    with session_scope(factory) as s:  # the holder died; the run is back in the queue
        s.execute(update(Run).where(Run.id == seeded.run_id).values(status="queued", worker_id=None))
    before = {m.__name__: ws.count(factory, m, m.run_id == seeded.run_id) for m in (Exchange, Step, Checkpoint)}
    assert before["Exchange"] and before["Checkpoint"]
    settings = ws.make_settings(tmp_path, db_url, tiny_cache)   # its runs directory holds no checkpoint
    worker = Worker(settings, engine=eng)
    try:
        assert worker.process_next()
    finally:
        worker.close()
    run = ws.get_run(factory, seeded.run_id)
    assert run.status == "failed" and "not restarted from scratch" in run.error
    assert "OPCOD_DATA_DIR/runs" in run.error and "none is readable" in run.error
    after = {m.__name__: ws.count(factory, m, m.run_id == seeded.run_id) for m in (Exchange, Step, Checkpoint)}
    assert after == before
    eng.dispose()
