"""A throw-away PostgreSQL 15 server on a free loopback port: what the PostgreSQL tests
(``tests/app/conftest.py``) and the store benchmarks (``benchmarks/store_scale.py``) run against.

Why a real local server: the two backends differ exactly where bugs and costs hide (types, JSON vs JSONB,
64-bit ids, planner choices), and there is no Docker engine. The server lives in a temp dir owned by the
``postgres`` user (initdb refuses to run as root, so as root it runs as that user), durability is off
(``fsync``, ``synchronous_commit``, ``full_page_writes``: nothing here must survive a crash), and it is
stopped and deleted when the context exits. ``OPCOD_PG_BIN`` points at another install.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

PG_BIN = Path(os.environ.get("OPCOD_PG_BIN", "/usr/lib/postgresql/15/bin"))
START_DEADLINE_S = 60


@dataclass(frozen=True)
class PostgresServer:
    host: str
    port: int
    user: str

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{database}"

    def admin(self):
        import psycopg

        return psycopg.connect(host=self.host, port=self.port, user=self.user, dbname="postgres",
                               autocommit=True, connect_timeout=5)

    def create_database(self, name: str) -> str:
        """A fresh empty database; its SQLAlchemy URL."""
        with self.admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        with self.admin() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def missing_binaries() -> list[str]:
    """The server binaries not found in ``PG_BIN`` (empty when a server can start)."""
    return [b for b in ("initdb", "pg_ctl") if not (PG_BIN / b).exists()]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_postgres(cmd: list[str]) -> list[str]:
    """initdb/postgres refuse root: as root, run them as the ``postgres`` system user."""
    if os.geteuid() != 0:
        return cmd
    if shutil.which("runuser"):
        return ["runuser", "-u", "postgres", "--", *cmd]
    return ["su", "postgres", "-s", "/bin/sh", "-c", shlex.join(cmd)]


def _run(cmd: list[str], cwd: Path) -> None:
    res = subprocess.run(_as_postgres(cmd), cwd=cwd, capture_output=True, text=True, timeout=120)
    if res.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({res.returncode}):\n{res.stdout}\n{res.stderr}")


def _check_ready(server: PostgresServer, log: Path) -> None:
    """One real connection: ``pg_ctl -w`` already polled until the server reported it was accepting."""
    import psycopg

    try:
        with server.admin() as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError as exc:
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else "(no log)"
        raise RuntimeError(f"PostgreSQL started but refuses connections: {exc}\n{tail}") from exc


def _stop(data: Path, root: Path) -> None:
    subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "-t", "60", "stop"]),
                   cwd=root, capture_output=True, timeout=90)


def stop_on_sigterm() -> None:
    """Make SIGTERM raise ``SystemExit`` in the main thread, so ``local_postgres`` stops its server when a
    script using it is terminated (Python's default for SIGTERM skips ``finally`` blocks)."""
    import signal
    import sys

    signal.signal(signal.SIGTERM, lambda _sig, _frame: sys.exit(143))


@contextmanager
def local_postgres(settings: tuple[str, ...] = ()) -> Iterator[PostgresServer]:
    """Start a server (``settings``: extra ``-c name=value`` options), yield it, stop and delete it."""
    missing = missing_binaries()
    if missing:
        raise RuntimeError(f"PostgreSQL binaries {missing} not found in {PG_BIN}: install PostgreSQL 15 or "
                           "point OPCOD_PG_BIN at its bin directory")
    root = Path(tempfile.mkdtemp(prefix="opcod-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, user="postgres", group="postgres")
    data, sock, log = root / "data", root / "sock", root / "server.log"
    started = False
    try:
        _run([str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "-E", "UTF8",
              "--locale=C", "--no-sync", "--no-instructions"], cwd=root)
        _run(["mkdir", "-p", str(sock)], cwd=root)
        server = None
        extra = "".join(f" -c {s}" for s in settings)
        for attempt in range(3):  # a port picked as free can be taken before the server binds it
            port = _free_port()
            opts = (f"-c listen_addresses=127.0.0.1 -p {port} -k {sock} -c fsync=off "
                    f"-c synchronous_commit=off -c full_page_writes=off -c max_connections=200{extra}")
            try:
                # -w: pg_ctl polls postmaster.pid until the server accepts connections, up to -t seconds
                _run([str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(log), "-o", opts, "-w",
                      "-t", str(START_DEADLINE_S), "start"], cwd=root)
                started = True
                server = PostgresServer("127.0.0.1", port, "postgres")
                _check_ready(server, log)
                break
            except RuntimeError:
                if log.exists() and "could not bind" not in log.read_text(errors="replace"):
                    raise
                if started:
                    _stop(data, root)
                    started = False
                if attempt == 2:
                    raise
        yield server
    finally:
        if started:
            _stop(data, root)
        shutil.rmtree(root, ignore_errors=True)
