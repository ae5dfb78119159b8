"""``app.worker_pool.WorkerPool``: dead workers are restarted, with a delay that grows while they keep dying,
and a stopping pool restarts nothing and stops everything."""

from __future__ import annotations

import os
import signal
import sys
import time

from app.worker_pool import WorkerPool

SLEEPER = [sys.executable, "-c", "import time; time.sleep(300)"]
CRASHER = [sys.executable, "-c", "import sys; sys.exit(3)"]


def _until(predicate, deadline_s: float = 30.0):
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.02)  # polling interval of a deadline loop
    raise AssertionError("condition not met in time")


def test_a_killed_worker_is_restarted_and_stop_ends_all():
    pool = WorkerPool(2, command=lambda: SLEEPER, backoff_s=0.0)
    pool.start(interval_s=0.02)
    try:
        first = list(pool.pids)
        assert len(first) == 2
        os.kill(first[0], signal.SIGKILL)
        _until(lambda: pool.restarts == 1 and len(pool.pids) == 2)
        assert first[0] not in pool.pids and first[1] in pool.pids
    finally:
        procs = [p for p in pool.procs if p is not None]
        pool.stop(grace_s=10)
    assert all(p.poll() is not None for p in procs)
    restarts = pool.restarts
    assert pool.check() == [] and pool.restarts == restarts  # a stopped pool restarts nothing


def test_restart_delay_grows_while_a_worker_keeps_dying():
    pool = WorkerPool(1, command=lambda: CRASHER, backoff_s=30.0, healthy_s=60.0)
    pool._spawn(0)
    try:
        _until(lambda: pool.procs[0].poll() is not None)
        assert pool.check() == []              # dead: noted, restart scheduled in 30 s, not now
        assert pool.procs[0] is None and pool.deaths[0] == 1
        pool.restart_at[0] = 0.0               # the delay is over
        assert pool.check() == [0]
        _until(lambda: pool.procs[0].poll() is not None)
        pool.check()
        assert pool.deaths[0] == 2 and pool.restart_at[0] - time.monotonic() > 45  # 60 s: doubled
    finally:
        pool.stop(grace_s=5)


def test_workers_share_the_cores_but_one_left_to_the_server(monkeypatch):
    from app.worker_pool import worker_env

    monkeypatch.delenv("OPCOD_TORCH_THREADS", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert worker_env(1)["OPCOD_TORCH_THREADS"] == "7"
    assert worker_env(2)["OPCOD_TORCH_THREADS"] == "3" and worker_env(16)["OPCOD_TORCH_THREADS"] == "1"
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert worker_env(1)["OPCOD_TORCH_THREADS"] == "1" and worker_env(2)["OPCOD_TORCH_THREADS"] == "1"
    monkeypatch.setattr("os.cpu_count", lambda: 1)
    assert worker_env(1)["OPCOD_TORCH_THREADS"] == "1"
    monkeypatch.setenv("OPCOD_TORCH_THREADS", "3")
    assert worker_env(4)["OPCOD_TORCH_THREADS"] == "3"   # an explicit setting wins
