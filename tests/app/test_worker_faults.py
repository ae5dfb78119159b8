"""Faults: a worker killed (SIGKILL) at each fault point of ``scripts/faults/worker.py`` (mid-generation,
mid-backward, between backward and update, mid-evaluation, mid-commit of a step, right after it, mid-checkpoint
write, between the checkpoint's rename and LATEST, with events.jsonl ahead of the database, while serving a
person's replay, while waiting for a person's approvals) is replaced by a worker that takes the run over: the
run finishes with exactly the records of an uninterrupted run with the same seed, no exchange lost or
duplicated, and the person's replays and approval decisions kept. Every point on SQLite and on PostgreSQL.
``scripts/faults/run.py`` prints the same checks as figures."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts" / "faults"))

import worker_support as ws  # noqa: E402
from run import Person, References, check_point  # noqa: E402
from worker import POINTS  # noqa: E402

from app.db import make_engine, session_factory, upgrade  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def faulty(request, tmp_path_factory, tiny_cache):
    """One database per backend with the uninterrupted reference run, shared by the module's points."""
    tmp = tmp_path_factory.mktemp(f"faults-{request.param}")
    server, name = None, f"opcod_faults_{uuid.uuid4().hex[:12]}"
    if request.param == "sqlite":
        url = f"sqlite:///{tmp / 'opcod.db'}"
    else:
        server = request.getfixturevalue("postgres_server")
        with server.admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        url = server.url(name)
    upgrade(url)
    engine = make_engine(url)
    factory = session_factory(engine)
    settings = ws.make_settings(tmp, url, tiny_cache, heartbeat_s=0.5, stale_after_s=2.0)
    env = {**os.environ, "OPCOD_DATABASE_URL": url, "OPCOD_DATA_DIR": str(tmp / "data"),
           "OPCOD_CACHE_DIR": str(tiny_cache), "OPCOD_HEARTBEAT_S": "0.5", "OPCOD_STALE_AFTER_S": "2",
           "OPCOD_POLL_S": "0.2", "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    person = Person(factory)
    person.start()
    yield request.param, factory, settings, engine, env, References(factory, settings, engine), tmp
    person.stop.set()
    person.join()
    engine.dispose()
    if server is not None:
        with server.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.parametrize("point", POINTS)
def test_a_kill_at_each_point_recovers_exactly(faulty, point):
    _backend, factory, settings, engine, env, refs, tmp = faulty
    result = check_point(point, 3, factory, settings, engine, env, refs, tmp)
    log = (tmp / f"{point}-3.log").read_text(errors="replace")[-3000:]
    assert result["killed"], log
    assert result["status"] == "finished", (result, log)
    assert result["lost"] == result["duplicated"] == 0, result
    assert result["equal"], result
    assert result["human_work_kept"], result
