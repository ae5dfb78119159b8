"""Export a run's exchanges as JSON Lines or Parquet, streamed in keyset chunks (oldest first, one short
transaction per chunk, so a million-exchange export neither holds a transaction open nor builds the
whole file in memory). One line = one exchange in the schema of the trainer's ``exchange`` events (``opcod_core.events``, the
lines of ``events.jsonl``) plus the row's id, run, origin row and time: one parser reads both.

The run's tutor-trust changes (quarantines and lifts, ``trust_change``) follow the exchanges in the JSON Lines,
one line each in the schema of the trainer's ``trust`` events (``type: "trust"``) plus the row's id, run and
time, in the order they were recorded; a Parquet file (one table of exchanges) carries them as a JSON list in
its schema metadata under ``opcod.trust_changes`` (``pyarrow.parquet.read_schema(path).metadata``). A run has
few of them: they are read in one query.

The run archive (``archive``, a zip) holds the exchanges' JSON Lines (exchanges only) and the run-level tables
beside them, each in the shape its API endpoint answers: ``flows.json`` is ``GET /runs/{id}/flows``, the
tutoring-flow matrix, and ``trust.json`` is ``GET /runs/{id}/trust``, the tutors' reputations and quarantine
periods with every trust change."""

from __future__ import annotations

import json
import tempfile
import zipfile
from typing import Iterator

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from app.db import session_scope
from app.exchange_events import exchange_event
from app.models import Exchange, Rollout, TrustChange
from app.services import SessionFactory, flows, get_run, keyset_page, trust
from opcod_core.events import ExchangeEvent, TrustEvent

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


class ExportedTrustChange(TrustEvent):
    """One exported trust change: the trainer's trust event as stored, plus the row's identity."""

    id: int
    run_id: int
    created_at: str


#: The Parquet schema metadata key of the run's trust changes (module docstring).
PARQUET_TRUST_KEY = b"opcod.trust_changes"


def trust_changes(db: SessionFactory, run_id: int) -> list[ExportedTrustChange]:
    """The run's trust changes in the order they were recorded."""
    with session_scope(db) as s:
        return [ExportedTrustChange(tutor=t.tutor, action=t.action, source=t.source, step=t.step, round=t.round,
                                    reason=t.reason, domain=t.domain,
                                    override_id=str(t.override_id) if t.override_id is not None else None,
                                    id=t.id, run_id=t.run_id, created_at=t.created_at.isoformat())
                for t in s.scalars(select(TrustChange).where(TrustChange.run_id == run_id).order_by(TrustChange.id))]


def exported(ex: Exchange) -> ExportedExchange:
    return ExportedExchange(**exchange_event(ex).model_dump(), id=ex.id, run_id=ex.run_id,
                            origin_exchange_id=ex.origin_exchange_id, created_at=ex.created_at.isoformat())


def _chunks(db: SessionFactory, run_id: int, chunk: int) -> Iterator[list[ExportedExchange]]:
    """The run's exchanges, oldest first, ``chunk`` rows per short transaction (keyset on the id)."""
    after = 0
    while True:
        with session_scope(db) as s:
            q = select(Exchange).where(Exchange.run_id == run_id).options(
                selectinload(Exchange.rollout).selectinload(Rollout.prompt),
                selectinload(Exchange.rollout).selectinload(Rollout.feedbacks), selectinload(Exchange.feedback),
                selectinload(Exchange.step_row))
            rows, _ = keyset_page(s, q, Exchange.id, chunk, after=after, newest_first=False)
            if not rows:
                return
            out = [exported(ex) for ex in rows]
            after = rows[-1].id
        yield out


def _lines(rows) -> bytes:
    return ("\n".join(json.dumps(x.to_dict(), ensure_ascii=False, separators=(",", ":")) for x in rows) + "\n").encode()


def jsonl(db: SessionFactory, run_id: int, chunk: int = CHUNK, with_trust: bool = True) -> Iterator[bytes]:
    """The exchanges, then (``with_trust``) the trust changes (module docstring)."""
    for rows in _chunks(db, run_id, chunk):
        yield _lines(rows)
    changes = trust_changes(db, run_id) if with_trust else []
    if changes:
        yield _lines(changes)


def parquet(db: SessionFactory, run_id: int, chunk: int = 10 * CHUNK) -> Iterator[bytes]:
    """The same rows as one Parquet file (schema: ``app.services.parquet_schema``; the per-token arrays as
    list columns): written a row group per chunk to
    a temporary file, then streamed, so memory stays bounded by a chunk."""
    import pyarrow.parquet as pq

    from app.services.parquet_schema import arrow_table, schema_of

    schema, as_json = schema_of(ExportedExchange)
    changes = [t.to_dict() for t in trust_changes(db, run_id)]
    schema = schema.with_metadata({PARQUET_TRUST_KEY: json.dumps(changes, ensure_ascii=False).encode()})
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


def trust_json(db: SessionFactory, run_id: int) -> bytes:
    """Tutor trust exactly as ``GET /runs/{id}/trust`` answers it (``app.services.trust``)."""
    return trust.trust(db, run_id).model_dump_json(indent=2).encode()


def archive(db: SessionFactory, run_id: int, chunk: int = CHUNK) -> Iterator[bytes]:
    """A zip of the run: ``flows.json`` (``flows_json``) and ``trust.json`` (``trust_json``), then
    ``exchanges.jsonl`` (``jsonl``, exchanges only: the trust changes are in ``trust.json``), written to a
    temporary file and streamed (memory stays bounded by a chunk). The tables are read first, each in one
    transaction: for a run still training, the exchanges that follow may include newer ones they do not count."""
    with tempfile.TemporaryFile() as fh:
        with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            zf.writestr("flows.json", flows_json(db, run_id))
            zf.writestr("trust.json", trust_json(db, run_id))
            with zf.open("exchanges.jsonl", "w") as out:
                for block in jsonl(db, run_id, chunk, with_trust=False):
                    out.write(block)
        fh.seek(0)
        while block := fh.read(1 << 20):
            yield block
