"""The one seeder (tests/app/seed.py) writes what a worker writes: its rows come from trainer events
through the real recorder, so a seeded exchange reads back as the event it was recorded from."""

from __future__ import annotations

from sqlalchemy import func, select

import seed
from app.db import make_engine, session_factory
from app.exchange_events import exchange_event
from app.models import Event, Exchange, Override, Replay, Run


def test_seeded_runs_are_the_rows_of_their_events(db_url):
    sf = session_factory(make_engine(db_url))
    ids = seed.dashboard_run(sf, steps=2, per_step=2)
    varied = seed.seed_run(sf, steps=2, per_step=3, status="finished")
    with sf() as s:
        run = s.get(Run, ids["run"])
        assert [st.name for st in run.students] == ["chem", "phys"] and run.worker_id is not None
        assert len(ids["exchanges"]) == 4 and ids["kept"] in ids["exchanges"]
        kept = s.get(Exchange, ids["kept"])
        event = exchange_event(kept)
        assert event.key == kept.key and event.category == "kept" and event.feedback_used in event.teacher_context
        assert len(event.tokens) == len(event.divergence) == len(event.token_ids)
        assert s.get(Override, s.scalar(select(Override.id).where(Override.run_id == run.id))).status == "applied"
        assert s.get(Replay, ids["replay"]).status == "done"
        # every trainer event has its event row (the SSE stream), in the trainer's order
        types = list(s.scalars(select(Event.type).where(Event.run_id == run.id).order_by(Event.id)))
        assert types[0] == "run_start" and types.count("exchange") == 4 and types.count("step") == 2
        done = s.get(Run, varied.run_id)
        assert done.status == "finished" and done.worker_id is None and done.progress["global_step"] == 1
        n = s.scalar(select(func.count()).select_from(Exchange).where(Exchange.run_id == varied.run_id))
        assert n == 6 and [exchange_event(s.get(Exchange, i)).human for i in varied.exchange_ids] == [
            i % 5 == 4 for i in range(6)]
