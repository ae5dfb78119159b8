"""Export a run's exchanges as JSON Lines or Parquet, streamed in keyset chunks (oldest first, one short
transaction per chunk, so a million-exchange export neither holds a transaction open nor builds the
whole file in memory). One line = one exchange in the schema of the trainer's ``exchange`` events (``opcod_core.events``, the
lines of ``events.jsonl``) plus the row's id, run, origin row and time: one parser reads both.

The run archive (``archive``, a zip) holds the exchanges' JSON Lines and the run-level tables beside them, each
in the shape its API endpoint answers: ``flows.json`` is ``GET /runs/{id}/flows``, the tutoring-flow matrix."""

from __future__ import annotations

import json
import tempfile
import zipfile
from typing import Iterator

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from app.db import session_scope
from app.exchange_events import exchange_event
from app.models import Exchange, Rollout
from app.services import SessionFactory, flows, get_run, keyset_page
from opcod_core.events import ExchangeEvent

CHUNK = 200


def check_run(db: SessionFactory, run_id: int) -> None:
    with session_scope(db) as s:
        get_run(s, run_id)


class ExportedExchange(ExchangeEvent):
    """One exported exchange: the trainer's exchange event as stored, plus the row's identity."""

    id: int
    run_id: int
    origin_exchange_id: int | None = None
    created_at: str


def exported(ex: Exchange) -> ExportedExchange:
    return ExportedExchange(**exchange_event(ex).model_dump(), id=ex.id, run_id=ex.run_id,
                            origin_exchange_id=ex.origin_exchange_id, created_at=ex.created_at.isoformat())


def _chunks(db: SessionFactory, run_id: int, chunk: int) -> Iterator[list[ExportedExchange]]:
    """The run's exchanges, oldest first, ``chunk`` rows per short transaction (keyset on the id)."""
    after = 0
    while True:
        with session_scope(db) as s:
            q = select(Exchange).where(Exchange.run_id == run_id).options(
                selectinload(Exchange.rollout).selectinload(Rollout.prompt), selectinload(Exchange.feedback),
                selectinload(Exchange.step_row))
            rows, _ = keyset_page(s, q, Exchange.id, chunk, after=after, newest_first=False)
            if not rows:
                return
            out = [exported(ex) for ex in rows]
            after = rows[-1].id
        yield out


def jsonl(db: SessionFactory, run_id: int, chunk: int = CHUNK) -> Iterator[bytes]:
    for rows in _chunks(db, run_id, chunk):
        yield ("\n".join(json.dumps(x.to_dict(), ensure_ascii=False, separators=(",", ":")) for x in rows)
               + "\n").encode()


def parquet(db: SessionFactory, run_id: int, chunk: int = 10 * CHUNK) -> Iterator[bytes]:
    """The same rows as one Parquet file (schema: ``app.services.parquet_schema``; the per-token arrays as
    list columns): written a row group per chunk to
    a temporary file, then streamed, so memory stays bounded by a chunk."""
    import pyarrow.parquet as pq

    from app.services.parquet_schema import arrow_table, schema_of

    schema, as_json = schema_of(ExportedExchange)
    with tempfile.TemporaryFile() as fh:
        with pq.ParquetWriter(fh, schema) as writer:
            for rows in _chunks(db, run_id, chunk):
                writer.write_table(arrow_table(rows, schema, as_json))
        fh.seek(0)
        while block := fh.read(1 << 20):
            yield block


# --- the run archive ------------------------------------------------------------------------------------------

def flows_json(db: SessionFactory, run_id: int) -> bytes:
    """The tutoring-flow matrix exactly as ``GET /runs/{id}/flows`` answers it (``app.services.flows``)."""
    return flows.flows(db, run_id).model_dump_json(indent=2).encode()


def archive(db: SessionFactory, run_id: int, chunk: int = CHUNK) -> Iterator[bytes]:
    """A zip of the run: ``flows.json`` (``flows_json``), then ``exchanges.jsonl`` (``jsonl``), written to a
    temporary file and streamed (memory stays bounded by a chunk). The matrix is read first, in one
    transaction: for a run still training, the exchanges that follow may include newer ones it does not count."""
    with tempfile.TemporaryFile() as fh:
        with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("flows.json", flows_json(db, run_id))
            with zf.open("exchanges.jsonl", "w") as out:
                for block in jsonl(db, run_id, chunk):
                    out.write(block)
        fh.seek(0)
        while block := fh.read(1 << 20):
            yield block
