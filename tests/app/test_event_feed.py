"""The shared event feed (app.api.event_feed): one database poll per watched run, every stream complete.

Each test drives ``EventFeeds.follow`` in an event loop over a real migrated database (SQLite and
PostgreSQL) while the test writes event rows, and checks what each follower received against the rows
in the database: every id once, in order, then ``end``."""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import select

import api_seed
from app.api import event_feed
from app.api.event_feed import EventFeeds
from app.db import make_engine, session_factory, session_scope
from app.models import Event


@pytest.fixture
def db(db_url):
    engine = make_engine(db_url)
    yield session_factory(engine)
    engine.dispose()


def stored_ids(db, run_id: int) -> list[int]:
    with session_scope(db) as s:
        return list(s.scalars(select(Event.id).where(Event.run_id == run_id).order_by(Event.id)))


def write_events(db, run_id: int, n: int) -> None:
    with session_scope(db) as s:
        for i in range(n):
            s.add(Event(run_id=run_id, type="step", ref_id=i, payload={"i": i}))


def parse(chunks: list[bytes]) -> list[tuple[str, int | None]]:
    """(event type, id) of every SSE message in the chunks a follower yielded."""
    out = []
    for message in b"".join(chunks).decode().split("\r\n\r\n"):
        fields = dict(line.split(": ", 1) for line in message.split("\r\n") if line and not line.startswith(":"))
        if fields:
            out.append((fields["event"], int(fields["id"]) if "id" in fields else None))
    return out


async def collect(follower, into: list[bytes]) -> None:
    async for chunk in follower:
        into.append(chunk)


async def until(predicate, what: str, deadline_s: float = 30.0) -> None:
    end = time.monotonic() + deadline_s
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)  # polling interval of a deadline loop


def check_complete(got: list[bytes], db, run_id: int) -> None:
    messages = parse(got)
    assert messages[-1] == ("end", None)
    assert [i for _t, i in messages[:-1]] == stored_ids(db, run_id)


def test_streams_of_one_run_share_one_feed_and_each_gets_every_event(db):
    """Twenty followers of a live run: one feed (one poll per interval, not twenty); rows written while
    they watch reach every one of them, each id once and in order; a follower that joins late from id 0
    gets the backlog too; `end` once the run is final, and the feed is gone."""
    run_id = api_seed.seed_run(db, status="running", steps=1, per_step=1).run_id

    async def scenario():
        feeds = EventFeeds(db, poll_s=0.01)
        got = [[] for _ in range(20)]
        tasks = [asyncio.create_task(collect(feeds.follow(run_id, 0), g)) for g in got]
        await until(lambda: feeds.active() == {run_id: 20}, "20 subscribers on one feed")
        for _ in range(5):
            await asyncio.to_thread(write_events, db, run_id, 7)
            await asyncio.sleep(0.02)  # let the feed publish between writes (any interleaving is correct)
        late: list[bytes] = []
        tasks.append(asyncio.create_task(collect(feeds.follow(run_id, 0), late)))
        await until(lambda: feeds.active() == {run_id: 21}, "the late follower on the same feed")
        await asyncio.to_thread(write_events, db, run_id, 3)
        await asyncio.to_thread(api_seed.set_status, db, run_id, "finished")
        await asyncio.wait_for(asyncio.gather(*tasks), 30)
        assert feeds.active() == {}
        return got + [late]

    for got in asyncio.run(scenario()):
        check_complete(got, db, run_id)


def test_a_follower_that_stops_reading_is_dropped_and_catches_up_from_the_database(db, monkeypatch):
    """A client that does not read while many batches are published holds at most MAX_QUEUED_BATCHES of
    them; it is then dropped from the feed and, when it reads again, gets the rest from the database."""
    monkeypatch.setattr(event_feed, "MAX_QUEUED_BATCHES", 2)
    run_id = api_seed.seed_run(db, status="running", steps=1, per_step=1).run_id

    async def scenario():
        feeds = EventFeeds(db, poll_s=0.01)
        reader: list[bytes] = []
        reading = asyncio.create_task(collect(feeds.follow(run_id, 0), reader))
        stalled = feeds.follow(run_id, 0)
        first = [await stalled.__anext__()]  # its backlog; it then subscribes and stops reading
        await until(lambda: feeds.active() == {run_id: 1}, "the reader on the feed")
        pending = asyncio.create_task(stalled.__anext__())
        await until(lambda: feeds.active() == {run_id: 2}, "the stalled follower on the feed")
        await asyncio.to_thread(write_events, db, run_id, 2)
        first.append(await pending)  # it has one batch from the feed and now stops reading
        for _ in range(6):  # six separate batches: more than the stalled follower may hold
            await asyncio.to_thread(write_events, db, run_id, 2)
            polls = feeds.polls  # a poll counted after the commit sees the rows; the one after it has published
            await until(lambda: feeds.polls >= polls + 2, "the feed to publish the batch")
        await until(lambda: feeds.active() == {run_id: 1}, "the stalled follower dropped from the feed")
        await asyncio.to_thread(api_seed.set_status, db, run_id, "finished")
        rest: list[bytes] = []
        await asyncio.wait_for(collect(stalled, rest), 30)
        await asyncio.wait_for(reading, 30)
        return reader, first + rest

    reader, stalled = asyncio.run(scenario())
    check_complete(reader, db, run_id)
    check_complete(stalled, db, run_id)


def test_leaving_unsubscribes_and_the_last_one_out_stops_the_feed(db):
    run_id = api_seed.seed_run(db, status="running", steps=1, per_step=1).run_id

    async def scenario():
        feeds = EventFeeds(db, poll_s=0.01)
        a, b = feeds.follow(run_id, 0), feeds.follow(run_id, 0)
        await a.__anext__()
        await b.__anext__()
        ta, tb = asyncio.create_task(a.__anext__()), asyncio.create_task(b.__anext__())
        await until(lambda: feeds.active() == {run_id: 2}, "two subscribers")
        ta.cancel()  # the client went away (sse-starlette cancels the stream's task)
        await asyncio.gather(ta, return_exceptions=True)
        assert feeds.active() == {run_id: 1}
        tb.cancel()
        await asyncio.gather(tb, return_exceptions=True)
        assert feeds.active() == {}
        polls = feeds.polls
        await asyncio.sleep(0.1)  # ten poll intervals: a stopped feed must not poll any more
        assert feeds.polls == polls

    asyncio.run(scenario())


def test_a_finished_run_ends_at_once_and_a_missing_run_ends_too(db):
    run_id = api_seed.seed_run(db, status="running", steps=1, per_step=1).run_id
    api_seed.set_status(db, run_id, "finished")

    async def scenario():
        feeds = EventFeeds(db, poll_s=0.01)
        whole, tail, missing = [], [], []
        await collect(feeds.follow(run_id, 0), whole)
        await collect(feeds.follow(run_id, stored_ids(db, run_id)[-3]), tail)
        await collect(feeds.follow(424242, 0), missing)
        assert feeds.polls == 0  # nothing to wait for: no feed was started
        return whole, tail, missing

    whole, tail, missing = asyncio.run(scenario())
    check_complete(whole, db, run_id)
    assert [i for _t, i in parse(tail)] == stored_ids(db, run_id)[-2:] + [None]
    assert parse(missing) == [("end", None)]
