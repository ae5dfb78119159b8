"""On PostgreSQL a run's event ids follow commit order (app.models.lock_run): a web transaction that adds
an event while a worker's step transaction is open waits for it, so its id is larger. Before, it took the
next id at once and committed first, and a stream that read it skipped the worker's event for good."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import select, text

from seed import seed_run

from app.db import make_engine, session_factory, session_scope
from app.models import Event, Run
from app.schemas import RunOverrideIn
from app.services import overrides
from app.worker.claim import fence


def test_event_ids_follow_commit_order(db_url):
    if not db_url.startswith("postgresql"):
        pytest.skip("SQLite serialises writers: its ids follow commit order by construction")
    eng = make_engine(db_url)
    factory = session_factory(eng)
    seeded = seed_run(factory, steps=1, per_step=1)
    with factory() as s:
        holder = s.get(Run, seeded.run_id).worker_id
    worker = factory()
    fence(worker, seeded.run_id, holder)                 # the worker's step transaction has begun
    web_done = threading.Event()

    def web():
        overrides.create_run_override(factory, seeded.run_id, RunOverrideIn(kind="set_tau", value=0.3))
        web_done.set()

    t = threading.Thread(target=web)
    t.start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:                   # the web transaction waits on the run's row lock
        with eng.connect() as c:
            waiting = c.execute(text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                     "AND datname = current_database()")).scalar()
        if waiting or web_done.is_set():
            break
        time.sleep(0.05)  # polling interval of a deadline loop
    assert not web_done.is_set(), "the web transaction did not wait for the open worker transaction"
    worker.add(Event(run_id=seeded.run_id, type="step", payload={}))
    worker.flush()
    worker.commit()
    worker.close()
    t.join(timeout=30)
    assert web_done.is_set()
    with session_scope(factory) as s:
        last_two = s.scalars(select(Event).where(Event.run_id == seeded.run_id).order_by(Event.id.desc())
                             .limit(2)).all()
    assert [e.type for e in reversed(last_two)] == ["step", "override"]  # ids in commit order
    eng.dispose()
