"""Services: the web side's use cases. Each public function takes the session factory, opens one unit
of work (``app.db.session_scope``), and either returns plain data / detached ORM rows or raises a
domain error from ``app.errors``. Routes (``app.api``, ``app.web``) only parse, call one service and
render. Nothing here trains: requests for the workers are rows (see docs/database-contract.md).
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from sqlalchemy import BigInteger
from sqlalchemy.orm import Session, sessionmaker

from app.errors import Invalid, NotFound
from app.models import Event, Exchange, Run, lock_run

SessionFactory = sessionmaker[Session]

MAX_ID = 2**63 - 1  # BigId tables (exchange, event, ...)
MAX_INT_ID = 2**31 - 1  # Integer primary keys (run, override, approval, replay, checkpoint) on PostgreSQL


def id_fits(model, ident: int) -> bool:
    """Whether ``ident`` can be a primary key of ``model`` (an out-of-range id is simply not found,
    instead of an "integer out of range" error from PostgreSQL)."""
    col = model.__table__.primary_key.columns.values()[0]
    return 0 < ident <= (MAX_ID if isinstance(col.type, BigInteger) else MAX_INT_ID)


def get_row(session: Session, model, ident: int, what: str):
    row = session.get(model, ident) if id_fits(model, ident) else None
    if row is None:
        raise NotFound(f"{what} {ident} not found")
    return row


def get_run(session: Session, run_id: int) -> Run:
    return get_row(session, Run, run_id, "run")


def get_exchange(session: Session, exchange_id: int) -> Exchange:
    return get_row(session, Exchange, exchange_id, "exchange")


def add_event(session: Session, run_id: int, type_: str, ref_id: int | None = None,
              payload: dict[str, Any] | None = None) -> None:
    """An ``event`` row in the caller's transaction (the SSE stream), after locking the run's row so that the
    run's event ids follow commit order (``app.models.lock_run``)."""
    lock_run(session, run_id)
    session.add(Event(run_id=run_id, type=type_, ref_id=ref_id, payload=payload or {}))
    session.flush()


# --- opaque keyset cursors ---------------------------------------------------------------------------

def encode_cursor(last_id: int) -> str:
    raw = json.dumps({"v": 1, "before": last_id}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int | None:
    """The id the next page starts below; a cursor we did not make is a 422 on ``cursor``."""
    if cursor is None or cursor == "":
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        before = data["before"]
        if data.get("v") != 1 or not isinstance(before, int) or isinstance(before, bool) or not 0 < before <= MAX_ID:
            raise ValueError
        return before
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError, AttributeError):
        raise Invalid.field("cursor", "not a cursor returned by this API") from None


def keyset_page(s: Session, query, id_col, limit: int, before: int | None = None, after: int | None = None,
                newest_first: bool = True, scalars: bool = True) -> tuple[list, bool]:
    """One keyset page of ``query``: at most ``limit`` rows with ``id_col`` below ``before`` and above
    ``after``, newest first (or oldest first), and whether more rows follow. Every list view pages this
    way (``WHERE ... AND id < :before ORDER BY id DESC LIMIT :n + 1``): constant cost per page at any
    depth, no OFFSET, stable while workers append. ``scalars``: rows are single entities."""
    if before is not None:
        query = query.where(id_col < before)
    if after is not None:
        query = query.where(id_col > after)
    query = query.order_by(id_col.desc() if newest_first else id_col.asc()).limit(limit + 1)
    rows = list(s.scalars(query)) if scalars else list(s.execute(query))
    return rows[:limit], len(rows) > limit


def ping(db: SessionFactory) -> None:
    """``SELECT 1``: raises when the database cannot be reached (``GET /healthz``)."""
    from sqlalchemy import text

    from app.db import session_scope

    with session_scope(db) as s:
        s.execute(text("SELECT 1"))


MAX_DEPTH = 32


def check_storable(value: Any, path: str = "") -> None:
    """Refuse what no database column can hold: NUL characters in text (PostgreSQL), non-finite numbers
    (JSON has none; Python's parser accepts NaN/Infinity) and absurd nesting (> ``MAX_DEPTH``).
    Iterative, so no input can exhaust the stack. Raises ``Invalid`` with the offending path."""
    stack: list[tuple[Any, str, int]] = [(value, path, 0)]
    while stack:
        v, p, depth = stack.pop()
        where = p or "(body)"
        if depth > MAX_DEPTH:
            raise Invalid.field(where, f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(v, str):
            if "\x00" in v:
                raise Invalid.field(where, "text may not contain NUL characters")
        elif isinstance(v, float):
            if v != v or v in (float("inf"), float("-inf")):
                raise Invalid.field(where, "numbers must be finite")
        elif isinstance(v, dict):
            for k, item in v.items():
                if isinstance(k, str) and "\x00" in k:
                    raise Invalid.field(where, "keys may not contain NUL characters")
                stack.append((item, f"{p}.{k}" if p else str(k), depth + 1))
        elif isinstance(v, (list, tuple)):
            for n, item in enumerate(v):
                stack.append((item, f"{p}.{n}" if p else str(n), depth + 1))
