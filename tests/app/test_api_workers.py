"""Worker liveness in the API and on the runs page: alive (fresh heartbeat), dead (stale, never stopped),
stopped; what each holds; the warning when queued runs have no live worker."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

import api_seed
from app.db import session_scope
from app.models import Run, Worker
from app.types import utcnow
from app.worker.claim import register_worker, set_worker_status


def _age(db, worker_id: int, seconds: float) -> None:
    with session_scope(db) as s:
        s.execute(update(Worker).where(Worker.id == worker_id)
                  .values(heartbeat_at=utcnow() - timedelta(seconds=seconds)))


def test_workers_alive_dead_and_stopped(api):
    client, db = api
    page = client.get("/")
    assert "Workers: 0 alive, 0 busy" in page.text
    run = client.post("/api/v1/runs", json={"preset": "tiny"}).json()["id"]
    assert "No worker is alive" in client.get("/").text
    alive, dead, stopped = (register_worker(db, n) for n in ("alive", "dead", "stopped"))
    _age(db, dead, 120)
    set_worker_status(db, stopped, "stopped")
    api_seed.set_status(db, run, "running", worker_id=alive, heartbeat_at=utcnow())
    body = client.get("/api/v1/workers").json()
    by_name = {w["name"]: w for w in body["items"]}
    assert set(by_name) == {"alive", "dead"} and body["alive"] == 1 and body["busy"] == 1
    assert by_name["alive"]["alive"] and by_name["alive"]["run_id"] == run
    assert not by_name["dead"]["alive"] and by_name["dead"]["run_id"] is None
    every = client.get("/api/v1/workers", params={"include_stopped": True}).json()
    assert {w["name"] for w in every["items"]} == {"alive", "dead", "stopped"}
    text = client.get("/").text
    assert "Workers: 1 alive, 1 busy" in text and "1 stopped answering (dead)" in text
    assert "No worker is alive" not in text
    with session_scope(db) as s:
        assert s.get(Run, run).worker_id == alive
