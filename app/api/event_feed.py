"""One database poll per watched run, fanned out to every open event stream of that run.

Each open stream used to poll the event table on its own (every ``sse_poll_s``): 50 open run pages made
100 queries a second and formatted every event 50 times, and the server took the CPU the trainer beside
it needed (benchmarks/live_load.py, docs/benchmarks.md). Now a stream first catches up on its own (a
client resuming from an old id reads its backlog directly, in pages), then subscribes to its run's
*feed*: one task per watched run that polls for events after the newest id it has published and hands
each batch, encoded once as SSE bytes, to every subscriber. A feed lives while a stream watches its run.

Completeness: a run's event ids follow commit order (the recorder locks the run on PostgreSQL), so
"id > last" is a complete cursor. A subscriber registers in the event loop, where no batch can be
published at the same moment, and notes the feed's position then; it reads the events between its own
last id and that position from the database, and takes everything after it from the feed, skipping ids
it has already sent. A subscriber that falls more than ``MAX_QUEUED_BATCHES`` batches behind (a client
that stopped reading) is dropped from the feed and catches up from the database again, so a slow client
holds a bounded amount of memory and never slows the others.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any, AsyncIterator

from sse_starlette.event import ServerSentEvent
from starlette.concurrency import run_in_threadpool

from app.services import SessionFactory, events

SEP = "\r\n"  # sse-starlette's default line separator (EventSourceResponse.DEFAULT_SEPARATOR)
MAX_QUEUED_BATCHES = 64


def encode(e: dict[str, Any]) -> bytes:
    """One event row as an SSE message (event type, id for Last-Event-ID, the row as JSON)."""
    return ServerSentEvent(data=json.dumps(e), event=e["type"], id=str(e["id"]), sep=SEP).encode()


def encode_end(run_id: int, status: str | None) -> bytes:
    return ServerSentEvent(data=json.dumps({"run_id": run_id, "status": status}), event="end", sep=SEP).encode()


@dataclass(frozen=True)
class _Batch:
    ids: list[int]
    chunks: list[bytes]


@dataclass(frozen=True)
class _End:
    status: str | None


class _Lagged:
    """Put in a subscriber's queue when it was dropped for falling behind."""


class FeedFailed(RuntimeError):
    """The feed's database read failed: the stream ends, and the client's EventSource reconnects."""


@dataclass(eq=False)
class _Feed:
    run_id: int
    position: int  # newest event id published
    subscribers: set[asyncio.Queue] = field(default_factory=set)
    task: asyncio.Task | None = None


class EventFeeds:
    """The feeds of one app (``app.state.event_feeds``), by run id. All methods run in the event loop."""

    def __init__(self, db: SessionFactory, poll_s: float):
        self.db, self.poll_s = db, poll_s
        self._feeds: dict[int, _Feed] = {}
        self.polls = 0  # database reads made by feeds (the figure the fan-out exists to keep low)

    def active(self) -> dict[int, int]:
        """Subscribers per watched run."""
        return {run_id: len(f.subscribers) for run_id, f in self._feeds.items()}

    async def follow(self, run_id: int, after: int) -> AsyncIterator[bytes]:
        """The stream of one client: every event of the run after ``after`` as SSE bytes (a batch per
        chunk), then an ``end`` message once the run is final and every event was sent."""
        last = after
        while True:
            while True:  # catch up on our own: a resumed client may be far behind the feed
                batch, status, more = await self._page(run_id, last)
                if batch:
                    last = batch[-1]["id"]
                    yield b"".join(encode(e) for e in batch)
                if not more:
                    break
            if events.is_final(status):  # read before the rows: nothing can come after them
                yield encode_end(run_id, status)
                return
            feed, queue = self._subscribe(run_id, last)
            try:
                while last < feed.position:  # what the feed published before we joined
                    gap, _, _ = await self._page(run_id, last, upto=feed.position)
                    if not gap:
                        break
                    last = gap[-1]["id"]
                    yield b"".join(encode(e) for e in gap)
                while True:
                    message = await queue.get()
                    if isinstance(message, _Lagged):
                        break  # dropped for falling behind: catch up from the database again
                    if isinstance(message, _End):
                        yield encode_end(run_id, message.status)
                        return
                    if isinstance(message, FeedFailed):
                        raise message
                    fresh = [c for i, c in zip(message.ids, message.chunks) if i > last]
                    if fresh:
                        last = message.ids[-1]
                        yield b"".join(fresh)
            finally:
                self._unsubscribe(feed, queue)

    async def _page(self, run_id: int, last: int, upto: int | None = None) -> tuple[list[dict], str | None, bool]:
        """One page of events after ``last`` from the database (those up to ``upto`` when given), the run's
        status read before them, and whether a full page came (more may follow)."""
        batch, status = await run_in_threadpool(events.events_after, self.db, run_id, last)
        more = len(batch) >= events.BATCH
        if upto is not None:
            batch = [e for e in batch if e["id"] <= upto]
        return batch, status, more

    def _subscribe(self, run_id: int, last: int) -> tuple[_Feed, asyncio.Queue]:
        feed = self._feeds.get(run_id)
        if feed is None:
            feed = self._feeds[run_id] = _Feed(run_id, position=last)
            feed.task = asyncio.create_task(self._poll(feed), name=f"event-feed-{run_id}")
        queue: asyncio.Queue = asyncio.Queue()
        feed.subscribers.add(queue)
        return feed, queue

    def _unsubscribe(self, feed: _Feed, queue: asyncio.Queue) -> None:
        feed.subscribers.discard(queue)
        if not feed.subscribers and self._feeds.get(feed.run_id) is feed:
            del self._feeds[feed.run_id]
            if feed.task is not None:
                feed.task.cancel()

    async def _poll(self, feed: _Feed) -> None:
        try:
            while True:
                self.polls += 1
                batch, status = await run_in_threadpool(events.events_after, self.db, feed.run_id, feed.position)
                if batch:
                    feed.position = batch[-1]["id"]
                    self._publish(feed, _Batch([e["id"] for e in batch], [encode(e) for e in batch]))
                    if len(batch) == events.BATCH:
                        continue
                elif events.is_final(status):
                    self._close(feed, _End(status))
                    return
                await asyncio.sleep(self.poll_s)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the database went away: end every stream; clients reconnect and resume
            self._close(feed, FeedFailed(f"reading the events of run {feed.run_id} failed: {exc}"))

    def _publish(self, feed: _Feed, batch: _Batch) -> None:
        for queue in list(feed.subscribers):
            if queue.qsize() >= MAX_QUEUED_BATCHES:
                feed.subscribers.discard(queue)
                queue.put_nowait(_Lagged())
            else:
                queue.put_nowait(batch)

    def _close(self, feed: _Feed, last_message: _End | FeedFailed) -> None:
        if self._feeds.get(feed.run_id) is feed:
            del self._feeds[feed.run_id]
        for queue in feed.subscribers:
            queue.put_nowait(last_message)
        feed.subscribers.clear()
