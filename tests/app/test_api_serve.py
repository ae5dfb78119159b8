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
