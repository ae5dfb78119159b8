"""`opcod serve`: refuses a non-loopback bind without a token, serves the API, stops cleanly on signals."""

from __future__ import annotations

import signal
import subprocess
import sys

import httpx
import pytest

import api_seed

from app.serve import is_loopback


def test_loopback_detection():
    assert all(is_loopback(h) for h in ("127.0.0.1", "localhost", "::1", "[::1]", "127.1.2.3"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.5", "example.org", "10.0.0.1"))


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.5", "example.org"])
def test_refuses_non_loopback_without_token(tmp_path, host):
    env = {k: v for k, v in __import__("os").environ.items() if not k.startswith("OPCOD_")}
    env["OPCOD_DATA_DIR"] = str(tmp_path)
    res = subprocess.run([sys.executable, "-m", "opcod_core.cli", "serve", "--host", host, "--no-worker"],
                         capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path)
    assert res.returncode == 2, res.stderr
    assert "OPCOD_API_TOKEN" in res.stderr and host in res.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serves_and_stops_on_signal(tmp_path, sig):
    served = api_seed.Served(tmp_path / "data", args=["--no-worker"])
    try:
        served.wait_healthy()
        r = httpx.post(served.base + "/api/v1/runs", json={"preset": "tiny"}, timeout=10)
        assert r.status_code == 201, r.text
        assert httpx.get(served.base + "/openapi.json", timeout=10).status_code == 200
        assert (tmp_path / "data" / "opcod.db").exists()  # migrated at start, in the data dir
    finally:
        rc = served.stop(sig, timeout_s=60)
    assert rc == 0, served.log()


def test_token_protects_a_served_api(tmp_path):
    served = api_seed.Served(tmp_path / "data", args=["--no-worker"], env={"OPCOD_API_TOKEN": "tok"})
    try:
        served.wait_healthy()
        assert httpx.get(served.base + "/api/v1/runs", timeout=10).status_code == 401
        assert httpx.get(served.base + "/api/v1/runs", headers={"Authorization": "Bearer tok"}, timeout=10).status_code == 200
    finally:
        served.stop()


def test_serve_restarts_a_worker_that_dies(tmp_path):
    """A worker killed under ``opcod serve`` is started again, and ``GET /api/v1/workers`` shows who is alive."""
    import os
    import time

    served = api_seed.Served(tmp_path / "data", args=["--workers", "1"],
                             env={"OPCOD_HEARTBEAT_S": "0.5", "OPCOD_STALE_AFTER_S": "3"})

    def alive_pids() -> set[int]:
        body = httpx.get(served.base + "/api/v1/workers", timeout=10).json()
        return {w["pid"] for w in body["items"] if w["alive"]}

    def wait_for(predicate, what: str, deadline_s: float = 120.0):
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            value = predicate()
            if value:
                return value
            time.sleep(0.2)  # polling interval of a deadline loop, not a wait for an event
        raise AssertionError(f"{what} within {deadline_s:.0f} s\n{served.log()}")

    try:
        served.wait_healthy()
        first = wait_for(alive_pids, "a worker alive")
        assert len(first) == 1
        os.kill(next(iter(first)), signal.SIGKILL)
        second = wait_for(lambda: alive_pids() - first, "a restarted worker alive")
        assert len(second) == 1
        wait_for(lambda: next(iter(first)) not in alive_pids(), "the killed worker shown dead")
        assert "restarting it" in served.log()
    finally:
        rc = served.stop(signal.SIGTERM, timeout_s=60)
    assert rc == 0, served.log()


def test_a_server_restart_mid_run_loses_nothing(tmp_path, tiny_cache):
    """``opcod serve`` stopped (SIGTERM) while its worker trains, then started again on the same data
    directory: the run goes back to the queue at a step boundary, resumes from its checkpoint and finishes
    with every step recorded once and every exchange once."""
    data = tmp_path / "data"
    env = {"OPCOD_CACHE_DIR": str(tiny_cache), "OPCOD_POLL_S": "0.2"}
    body = {"preset": "tiny", "name": "restarted", "overrides": {"schedule": {"rounds": 2, "steps_per_direction": 6}}}
    first = api_seed.Served(data, args=["--workers", "1"], env=env)
    try:
        first.wait_healthy()
        rid = httpx.post(first.base + "/api/v1/runs", json=body, timeout=10).json()["id"]

        def steps() -> int:
            return len(httpx.get(f"{first.base}/api/v1/runs/{rid}/metrics", params={"keys": "time/step"},
                                 timeout=10).json()["series"].get("time/step", []))

        api_seed.wait_for(lambda: steps() >= 2, 900, "two steps of the run")
    finally:
        assert first.stop(signal.SIGTERM, timeout_s=300) == 0, first.log()
    from app.db import make_engine, session_factory
    from app.models import Run

    engine = make_engine(f"sqlite:///{data / 'opcod.db'}")
    with session_factory(engine)() as s:
        stopped = s.get(Run, rid)
        assert (stopped.status, (stopped.progress or {}).get("paused_by")) == ("queued", "shutdown")  # mid-run
    engine.dispose()
    second = api_seed.Served(data, args=["--workers", "1"], env=env, port=first.port)
    try:
        second.wait_healthy()
        def final_run():
            run = httpx.get(f"{second.base}/api/v1/runs/{rid}", timeout=10).json()
            return run if run["status"] in ("finished", "failed") else None

        run = api_seed.wait_for(final_run, 1200, "the run to finish")
        assert run["status"] == "finished", run.get("error")
        series = httpx.get(f"{second.base}/api/v1/runs/{rid}/metrics", params={"keys": "time/step"},
                           timeout=10).json()["series"]["time/step"]
        assert [s for s, _v in series] == list(range(24))                               # every step once
        keys, cursor = [], None
        while True:
            page = httpx.get(f"{second.base}/api/v1/runs/{rid}/exchanges",
                             params={"limit": 500, **({"cursor": cursor} if cursor else {})}, timeout=30).json()
            keys += [x["key"] for x in page["items"]]
            cursor = page.get("next_cursor")
            if not cursor:
                break
        assert len(keys) == len(set(keys)) == 24 * 4 * 4                                # every exchange once
    finally:
        second.stop()
