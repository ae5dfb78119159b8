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
import sys
import uuid
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from local_postgres import PostgresServer, local_postgres, missing_binaries, PG_BIN  # noqa: E402


@pytest.fixture(scope="session")
def postgres_server():
    if os.environ.get("OPCOD_SKIP_POSTGRES") == "1":
        pytest.skip("OPCOD_SKIP_POSTGRES=1: PostgreSQL tests skipped on request")
    missing = missing_binaries()
    if missing:
        pytest.fail(f"PostgreSQL binaries {missing} not found in {PG_BIN}: install PostgreSQL 15, point "
                    "OPCOD_PG_BIN at its bin directory, or set OPCOD_SKIP_POSTGRES=1 to skip these tests",
                    pytrace=False)
    with local_postgres() as server:
        yield server


@pytest.fixture
def postgres_database(postgres_server: PostgresServer):
    """A fresh, empty database on the session's server; dropped afterwards (connections or not)."""
    name = f"opcod_test_{uuid.uuid4().hex[:12]}"
    yield postgres_server.create_database(name)
    postgres_server.drop_database(name)


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
