"""Helpers of the API tests: an app over a migrated database, run status changes, SSE parsing, ``opcod
serve`` as a subprocess. Runs are seeded by the one seeder (``tests/app/seed.py``: trainer events through
the worker's real recorder)."""

from __future__ import annotations

import sys
from pathlib import Path

from app.db import session_scope
from app.models import Run
from seed import CATEGORIES, Seeded, finish_of, seed_run  # noqa: F401  (the one seeder: tests/app/seed.py)


def set_status(db, run_id: int, status: str, **values) -> None:
    with session_scope(db) as s:
        run = s.get(Run, run_id)
        run.status = status
        for k, v in values.items():
            setattr(run, k, v)


def open_api(db_url: str, tmp_path, token: str | None = None, max_body_bytes: int = 1 << 20, **settings):
    """A ``TestClient`` on ``create_app`` over ``db_url`` (already migrated) and its session factory."""
    from fastapi.testclient import TestClient

    from app.main import create_app
    from app.settings import Settings

    app = create_app(Settings(data_dir=tmp_path / "data", database_url=db_url, api_token=token,
                              max_body_bytes=max_body_bytes, **settings), sse_poll_s=0.01)
    return local_client(app), app.state.db


def local_client(app, **kwargs):
    """A ``TestClient`` that looks like a browser or script on this machine: loopback client address and
    Host (the server refuses others without a token: ``app.request_policy``)."""
    from fastapi.testclient import TestClient

    return TestClient(app, base_url="http://127.0.0.1", client=("127.0.0.1", 50000), **kwargs)


def with_csrf(client):
    """``client`` with the dashboard session's CSRF token as a default header (as htmx sends it), read from
    a page like a browser does."""
    import re

    page = client.get("/runs/new")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    client.headers["X-CSRF-Token"] = token
    return client


def parse_sse(lines) -> list[dict]:
    """SSE lines -> [{"event", "id", "data"}], one per blank-line-terminated block (comments skipped)."""
    events, cur = [], {}
    for line in lines:
        if line == "":
            if cur:
                events.append(cur)
                cur = {}
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        cur[name] = value[1:] if value.startswith(" ") else value
        if name == "data" and events is not None:
            pass
    if cur:
        events.append(cur)
    return events


# --- `opcod serve` as a subprocess ---------------------------------------------------------------------

def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """``opcod serve`` in a subprocess: its base URL, its log, and a clean stop."""

    def __init__(self, data_dir, args=(), env=None, port=None):
        import os
        import subprocess

        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(data_dir) / "serve.log"
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("OPCOD_")}
        full_env.update({"OPCOD_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1", **(env or {})})
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "opcod_core.cli", "serve", "--port", str(self.port), *args],
                                     stdout=self._log, stderr=subprocess.STDOUT, env=full_env, cwd=str(data_dir))

    def log(self, tail: int = 6000) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-tail:]

    def wait_healthy(self, deadline_s: float = 60.0) -> None:
        import time

        import httpx

        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise AssertionError(f"opcod serve exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.base + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)  # poll interval, bounded by the deadline
        raise AssertionError(f"opcod serve not healthy within {deadline_s} s:\n{self.log()}")

    def stop(self, sig=None, timeout_s: float = 180.0) -> int:
        import signal
        import subprocess

        if self.proc.poll() is None:
            self.proc.send_signal(sig or signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


def wait_for(predicate, deadline_s: float, what: str, interval_s: float = 0.2):
    """Poll ``predicate()`` until it returns something truthy, or fail after ``deadline_s``."""
    import time

    end = time.monotonic() + deadline_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {deadline_s} s waiting for {what}")
        time.sleep(interval_s)
