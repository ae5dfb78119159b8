"""Database fixtures: every database test runs against SQLite *and* a real PostgreSQL 15 server.

Why a real server: the two backends differ exactly where bugs hide (types, constraint names, JSON vs
JSONB, 64-bit ids, transaction semantics), and the image ships PostgreSQL 15. One server is started
per test session on a free loopback port, in a postgres-owned temp dir (initdb refuses to run as
root, so as root we run it as the ``postgres`` user), and each test gets a fresh database on it.

If the binaries are missing the PostgreSQL-parametrised tests FAIL with a message saying so; set
``OPCOD_SKIP_POSTGRES=1`` to skip them deliberately. ``OPCOD_PG_BIN`` points at another install.
"""

from __future__ import annotations

import os
import shlex
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

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


@pytest.fixture(scope="session")
def postgres_server():
    if os.environ.get("OPCOD_SKIP_POSTGRES") == "1":
        pytest.skip("OPCOD_SKIP_POSTGRES=1: PostgreSQL tests skipped on request")
    missing = [b for b in ("initdb", "pg_ctl") if not (PG_BIN / b).exists()]
    if missing:
        pytest.fail(f"PostgreSQL binaries {missing} not found in {PG_BIN}: install PostgreSQL 15, point "
                    "OPCOD_PG_BIN at its bin directory, or set OPCOD_SKIP_POSTGRES=1 to skip these tests",
                    pytrace=False)
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
        for _attempt in range(3):  # a port picked as free can be taken before the server binds it
            port = _free_port()
            opts = (f"-c listen_addresses=127.0.0.1 -p {port} -k {sock} -c fsync=off "
                    "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
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
                if _attempt == 2:
                    raise
        yield server
    finally:
        if started:
            _stop(data, root)
        shutil.rmtree(root, ignore_errors=True)


def _stop(data: Path, root: Path) -> None:
    subprocess.run(_as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "-t", "60", "stop"]),
                   cwd=root, capture_output=True, timeout=90)


@pytest.fixture
def postgres_database(postgres_server: PostgresServer):
    """A fresh, empty database on the session's server; dropped afterwards (connections or not)."""
    name = f"opcod_test_{uuid.uuid4().hex[:12]}"
    with postgres_server.admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    yield postgres_server.url(name)
    with postgres_server.admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgres"])
def empty_db_url(request, tmp_path) -> str:
    """An empty database URL on each backend (not migrated)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'db' / 'opcod.db'}"
    return request.getfixturevalue("postgres_database")


@pytest.fixture
def db_url(empty_db_url: str) -> str:
    """A database on each backend, migrated to head by Alembic (the only way the schema is built)."""
    from app.db import upgrade

    upgrade(empty_db_url)
    return empty_db_url


@pytest.fixture
def engine(db_url: str):
    from app.db import make_engine

    eng = make_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def session(engine):
    from app.db import session_factory

    with session_factory(engine)() as s:
        yield s


@pytest.fixture
def api(db_url, tmp_path):
    """A ``TestClient`` on the app over a migrated database (on each backend) and its session factory; test
    modules that need other settings define their own."""
    import api_seed

    client, db = api_seed.open_api(db_url, tmp_path)
    with client:
        yield client, db
