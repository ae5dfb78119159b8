"""Migrations: concurrent migrators on one PostgreSQL database are serialised (advisory lock), and a
database migrated by a newer version (an unknown schema revision) is refused with a clear error instead of
being run against."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import inspect, text

from app.db import UnknownSchema, make_engine, upgrade


def test_concurrent_upgrades_of_an_empty_database(empty_db_url):
    """Four processes (a server and workers starting together) migrate one empty database at once."""
    if not empty_db_url.startswith("postgresql"):
        pytest.skip("SQLite serialises writers (and its migrations) by itself")
    code = "import sys; from app.db import upgrade; upgrade(sys.argv[1])"
    root = Path(__file__).resolve().parents[2]
    procs = [subprocess.Popen([sys.executable, "-c", code, empty_db_url], cwd=root, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for _ in range(4)]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0], outputs
    eng = make_engine(empty_db_url)
    assert {"run", "exchange", "event"} <= set(inspect(eng).get_table_names())
    eng.dispose()


def test_an_unknown_schema_revision_is_refused(db_url):
    eng = make_engine(db_url)
    with eng.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = 'from_the_future_0099'"))
    with pytest.raises(UnknownSchema, match="from_the_future_0099.*newer version"):
        upgrade(db_url)
    with eng.connect() as conn:  # nothing was changed
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "from_the_future_0099"
    eng.dispose()
