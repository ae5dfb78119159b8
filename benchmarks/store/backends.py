"""The database backends the store benchmarks run on: SQLite (a file per database) and PostgreSQL 15 (a
throw-away local server, ``scripts/local_postgres.py``)."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

BACKENDS = ("sqlite", "postgres")


def unknown_backends(names: list[str]) -> list[str]:
    return [n for n in names if n not in BACKENDS]


@contextmanager
def backend_server(backend: str, settings: tuple[str, ...] = ()) -> Iterator[object | None]:
    """The server a backend needs for the duration (PostgreSQL: started, stopped even on SIGTERM, with
    ``settings``), or None (SQLite)."""
    if backend == "sqlite":
        yield None
        return
    from local_postgres import local_postgres, stop_on_sigterm

    stop_on_sigterm()
    with local_postgres(settings) as server:
        yield server
