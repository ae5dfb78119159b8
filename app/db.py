"""Engines, sessions and migrations: the database is the contract between the server and the workers.

Why these settings:
- SQLite (the default) is shared by the server and one or more worker processes. WAL mode lets readers
  (the dashboard, SSE) run while a worker writes; ``busy_timeout`` makes a writer wait up to 30 s for the
  lock instead of failing at once; ``foreign_keys`` is off by default in SQLite and must be switched on
  per connection. All three are set on every new connection by a ``connect`` listener. We keep
  pysqlite's default transaction handling (BEGIN issued lazily before the first write), so a read never
  holds a snapshot that a later write would have to upgrade (which SQLite refuses without waiting).
- PostgreSQL (for teams, workers on several hosts) goes through psycopg 3; plain ``postgresql://``
  URLs are mapped onto that driver.
- The schema is only ever built by Alembic (``upgrade``), never by ``create_all``, so the migration
  chain is exercised by every start and every test.
"""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker

ROOT = Path(__file__).resolve().parents[1]
ALEMBIC_INI = ROOT / "alembic.ini"
ALEMBIC_DIR = ROOT / "alembic"

SQLITE_BUSY_TIMEOUT_MS = 30_000


def normalize_url(url: str | URL) -> URL:
    """Parse a URL and pin PostgreSQL to psycopg 3 (``postgresql://`` would pick psycopg2)."""
    u = make_url(url)
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    return u


def _sqlite_on_connect(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    try:
        cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA foreign_keys = ON")
        # With WAL, NORMAL loses nothing when a process dies (SIGKILL); only a power cut may drop the last commits.
        cur.execute("PRAGMA synchronous = NORMAL")
    finally:
        cur.close()


def make_engine(url: str | URL, **kwargs) -> Engine:
    """An engine with the per-backend settings above; creates the SQLite file's parent directory."""
    u = normalize_url(url)
    if u.get_backend_name() == "sqlite":
        db = u.database or ""
        if db and db != ":memory:" and not db.startswith("file:"):
            Path(db).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(u, **kwargs)
        event.listen(engine, "connect", _sqlite_on_connect)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(u, **kwargs)


def session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions whose objects stay readable after commit (services return them to templates/schemas)."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any exception, always close."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def alembic_config(url: str | URL):
    """An Alembic config bound to ``url`` that works from any working directory."""
    from alembic.config import Config

    cfg = Config(str(ALEMBIC_INI))
    cfg.set_main_option("script_location", str(ALEMBIC_DIR))
    cfg.attributes["url"] = normalize_url(url).render_as_string(hide_password=False)
    cfg.attributes["configure_logger"] = False  # never reconfigure the host process's logging
    return cfg


#: PostgreSQL advisory lock key that serialises migrations (alembic/env.py): "opcod-migrate" as an integer.
MIGRATION_LOCK_KEY = int.from_bytes(b"opcodmig", "big") & 0x7FFFFFFFFFFFFFFF


class UnknownSchema(RuntimeError):
    """The database was migrated by a newer OPCoD (its schema revision is not one this code knows)."""


def check_known_revision(url: str | URL) -> None:
    """Raise ``UnknownSchema`` when the database's schema revision is not one of this code's migrations
    (a newer version migrated it): running against it could corrupt rows this code does not understand."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(alembic_config(url))
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_heads()
    finally:
        engine.dispose()
    known = {rev.revision for rev in script.walk_revisions()}
    unknown = [rev for rev in current if rev not in known]
    if unknown:
        raise UnknownSchema(f"the database's schema is at revision {', '.join(unknown)}, which this version of "
                            f"OPCoD does not know (its newest is {script.get_current_head()}): a newer version "
                            "migrated it. Upgrade OPCoD, or point OPCOD_DATABASE_URL at another database")


def upgrade(url: str | URL, revision: str = "head") -> None:
    """``alembic upgrade head`` on ``url`` (run by ``opcod serve``/``opcod worker`` at start and by tests),
    after refusing a schema this code does not know (``check_known_revision``)."""
    from alembic import command

    check_known_revision(url)

    command.upgrade(alembic_config(url), revision)


def downgrade(url: str | URL, revision: str = "base") -> None:
    from alembic import command

    command.downgrade(alembic_config(url), revision)
