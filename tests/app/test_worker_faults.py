"""Faults: a worker killed (SIGKILL) at each fault point of ``scripts/faults/worker.py`` (mid-generation,
mid-backward, between backward and update, mid-evaluation, mid-commit of a step, right after it, mid-checkpoint
write, between the checkpoint's rename and LATEST, with events.jsonl ahead of the database) is replaced by a
worker that takes the run over: the run finishes with exactly the records of an uninterrupted run with the
same seed, no exchange lost or duplicated. All points on SQLite; on PostgreSQL the points around commits and
checkpoints (``PG_POINTS``). ``scripts/faults/run.py`` prints the same checks as figures."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts" / "faults"))

import worker_support as ws  # noqa: E402
from run import check_point, reference  # noqa: E402
from worker import POINTS  # noqa: E402

from app.db import make_engine, session_factory, upgrade  # noqa: E402

pytestmark = pytest.mark.slow
PG_POINTS = ("step_commit", "rename_latest", "checkpoint_write")


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
    ref = reference(factory, settings, engine)
    yield request.param, factory, settings, engine, env, ref, tmp
    engine.dispose()
    if server is not None:
        with server.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.parametrize("point", POINTS)
def test_a_kill_at_each_point_recovers_exactly(faulty, point):
    backend, factory, settings, engine, env, ref, tmp = faulty
    if backend == "postgresql" and point not in PG_POINTS:
        pytest.skip("on PostgreSQL only the points around commits and checkpoints (CI time)")
    result = check_point(point, 3, factory, settings, engine, env, ref, tmp)
    log = (tmp / f"{point}-3.log").read_text(errors="replace")[-3000:]
    assert result["killed"], log
    assert result["status"] == "finished", (result, log)
    assert result["lost"] == result["duplicated"] == 0, result
    assert result["equal"], result
