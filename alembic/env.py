"""Alembic environment: migrations run against the URL the caller chose, with the app's engine settings.

Why: the same migrations serve a laptop's SQLite file and a team's PostgreSQL, from the CLI and from
``app.db.upgrade`` (server and worker start, tests). The URL comes, in order, from
``config.attributes["url"]`` (programmatic), ``-x url=...`` (CLI) and the settings
(``OPCOD_DATABASE_URL`` or the default SQLite file). SQLite cannot ALTER most things, so migrations run
in batch mode there; ``compare_type`` makes autogenerate notice type changes. On PostgreSQL migrations
are serialised by an advisory lock (``MIGRATION_LOCK_KEY``).
"""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import text

from app.db import MIGRATION_LOCK_KEY, make_engine, normalize_url
from app.models import Base

config = context.config
target_metadata = Base.metadata

if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def database_url() -> str:
    url = config.attributes.get("url") or context.get_x_argument(as_dictionary=True).get("url")
    if not url:
        from app.settings import Settings

        url = Settings().database_url
    return normalize_url(url).render_as_string(hide_password=False)


def _options(url: str) -> dict:
    return {
        "target_metadata": target_metadata,
        "compare_type": True,
        "render_as_batch": url.startswith("sqlite"),
    }


def run_migrations_offline() -> None:
    url = database_url()
    context.configure(url=url, literal_binds=True, dialect_opts={"paramstyle": "named"}, **_options(url))
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:  # a caller (e.g. a test) lends its own connection
        context.configure(connection=connection, **_options(connection.engine.url.drivername))
        with context.begin_transaction():
            context.run_migrations()
        return
    url = database_url()
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                # One migrator at a time (server and workers all migrate at start): a session-level advisory
                # lock, held until this connection closes; the others wait, then find nothing left to do.
                conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
                conn.commit()
            context.configure(connection=conn, **_options(url))
            with context.begin_transaction():
                context.run_migrations()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
