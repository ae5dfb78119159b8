"""A worker runs a Ray-executor run (students in actors on a local Ray) and stores exactly what it
stores for the same run on the local executor: the dashboard sees a Ray run as it sees a local one."""

from __future__ import annotations

import os

import pytest
import torch

ray = pytest.importorskip("ray") if os.environ.get("OPCOD_REQUIRE_RAY") != "1" else __import__("ray")

import worker_support as ws

from app.db import make_engine, session_factory
from app.worker.loop import Worker

pytestmark = [pytest.mark.slow, pytest.mark.ray]


def test_ray_run_stores_what_a_local_run_stores(db_url, tmp_path, tiny_cache):
    if not db_url.startswith("sqlite"):
        pytest.skip("executor parity does not depend on the database; checked on SQLite")
    eng = make_engine(db_url)
    factory = session_factory(eng)
    settings = ws.make_settings(tmp_path, db_url, tiny_cache)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in each 1-CPU actor, so float reductions are the same
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        local = ws.enqueue(factory, ws.small_config(), "local")
        remote = ws.enqueue(factory, ws.small_config(executor="ray", ray={"num_cpus_per_student": 1}), "ray")
        worker = Worker(settings, engine=eng)
        assert worker.process_next() and worker.process_next()
        worker.close()
        assert worker.processed == [(local, "finished"), (remote, "finished")]
        a, b = ws.run_records(factory, local), ws.run_records(factory, remote)
        assert a["exchanges"] and a == b
        assert ws.get_run(factory, local).summary == ws.get_run(factory, remote).summary
    finally:
        ray.shutdown()
        torch.set_num_threads(threads)
        eng.dispose()
