"""/api/v1 streams: the run's SSE event stream and the JSONL export."""

from __future__ import annotations

from contextlib import aclosing
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import StreamingResponse
from sse_starlette.sse import EventSourceResponse
from starlette.concurrency import run_in_threadpool

from app.api.deps import get_db
from app.errors import Invalid, Unavailable
from app.services import SessionFactory, events, export

router = APIRouter(tags=["streams"])
Db = Annotated[SessionFactory, Depends(get_db)]


@router.get("/runs/{run_id}/events", response_class=EventSourceResponse,
            summary="Server-sent events: every row a worker writes, then `end` when the run is final",
            responses={200: {"content": {"text/event-stream": {}}}})
async def run_events(run_id: int, request: Request, db: Db,
                     last_event_id: int | None = Query(None, ge=0, description="Resume after this event id."),
                     last_event_id_header: str | None = Header(None, alias="Last-Event-ID")):
    after = last_event_id or 0
    if last_event_id_header is not None and last_event_id_header.strip():
        try:
            after = max(after, int(last_event_id_header))
        except ValueError:
            raise Invalid.field("Last-Event-ID", "must be an event id (an integer)") from None
    await run_in_threadpool(events.check_run, db, run_id)
    feeds = request.app.state.event_feeds
    open_streams = request.app.state.open_streams
    limit = request.app.state.settings.max_event_streams
    if open_streams[0] >= limit:  # each open stream holds a connection and a queue: a bounded number
        raise Unavailable(f"{open_streams[0]} event streams are open, the most this server serves "
                          f"(OPCOD_MAX_EVENT_STREAMS); retry shortly")
    open_streams[0] += 1

    async def stream():
        try:
            async with aclosing(feeds.follow(run_id, after)) as chunks:  # unsubscribes when the client leaves
                async for chunk in chunks:
                    yield chunk
        finally:
            open_streams[0] -= 1

    return EventSourceResponse(stream(), ping=15)


_EXPORTS = {"jsonl": (export.jsonl, "application/x-ndjson"), "parquet": (export.parquet, "application/vnd.apache.parquet"),
            "zip": (export.archive, "application/zip")}
_FILENAMES = {"jsonl": "run-{id}-exchanges.jsonl", "parquet": "run-{id}-exchanges.parquet", "zip": "run-{id}.zip"}


@router.get("/runs/{run_id}/export", summary="All exchanges of a run as JSON Lines or Parquet (oldest first), or "
            "the run archive (zip)",
            description="One record per exchange in the schema of the trainer's `exchange` events (the lines of "
                        "`events.jsonl`, `opcod_core.events.ExchangeEvent`) plus `id`, `run_id`, "
                        "`origin_exchange_id` and `created_at`; then the run's trust changes, one `trust` line "
                        "each (`opcod_core.events.TrustEvent` plus `id`, `run_id`, `created_at`). Parquet: the "
                        "per-token arrays as list columns, the trust changes as JSON in the schema metadata "
                        "`opcod.trust_changes`. zip: `exchanges.jsonl` (the exchange lines of `format=jsonl`), "
                        "`flows.json` (the tutoring-flow matrix, as `GET /runs/{id}/flows`) and `trust.json` "
                        "(as `GET /runs/{id}/trust`).",
            response_class=StreamingResponse,
            responses={200: {"content": {"application/x-ndjson": {}, "application/vnd.apache.parquet": {},
                                         "application/zip": {}}}})
def export_run(run_id: int, db: Db, format: Literal["jsonl", "parquet", "zip"] = "jsonl") -> StreamingResponse:
    export.check_run(db, run_id)
    write, media = _EXPORTS[format]
    filename = _FILENAMES[format].format(id=run_id)
    return StreamingResponse(write(db, run_id), media_type=media,
                             headers={"Content-Disposition": f'attachment; filename="{filename}"'})
