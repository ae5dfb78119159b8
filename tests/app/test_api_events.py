"""The SSE stream of a run: event/id/data per row, resumable with Last-Event-ID, ends with `end`."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

import api_seed

from app.db import session_scope
from app.models import Event

V1 = "/api/v1"


@pytest.fixture
def api(db_url, tmp_path):
    client, db = api_seed.open_api(db_url, tmp_path)
    with client:
        yield client, db


def read_stream(client, url, headers=None, on_event=None) -> list[dict]:
    out = []
    with client.stream("GET", url, headers=headers or {}) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        block: dict = {}
        for line in r.iter_lines():
            if line == "":
                if block:
                    out.append(block)
                    if on_event is not None:
                        on_event(block)
                    if block.get("event") == "end":
                        return out
                    block = {}
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            block[name] = value[1:] if value.startswith(" ") else value
    return out


def event_ids(db, run_id):
    with session_scope(db) as s:
        return list(s.scalars(select(Event.id).where(Event.run_id == run_id).order_by(Event.id)))


def event_types(db, run_id: int) -> list[str]:
    with session_scope(db) as s:
        return list(s.scalars(select(Event.type).where(Event.run_id == run_id).order_by(Event.id)))


def test_stream_of_a_finished_run_then_resume(api):
    client, db = api
    seeded = api_seed.seed_run(db, status="running", steps=1, per_step=1)
    other = api_seed.seed_run(db, status="running", steps=1, per_step=1)
    api_seed.set_status(db, seeded.run_id, "finished")
    ids, types = event_ids(db, seeded.run_id), event_types(db, seeded.run_id)
    assert len(ids) >= 7 and types[0] == "run_start" and {"gate", "exchange", "step"} <= set(types)
    got = read_stream(client, f"{V1}/runs/{seeded.run_id}/events")
    assert [int(e["id"]) for e in got[:-1]] == ids
    assert [e["event"] for e in got[:-1]] == types
    first = json.loads(got[0]["data"])
    assert first["id"] == ids[0] and first["run_id"] == seeded.run_id and first["type"] == "run_start"
    assert got[-1]["event"] == "end" and json.loads(got[-1]["data"])["status"] == "finished"
    assert other.run_id not in {json.loads(e["data"]).get("run_id") for e in got[:-1]}

    resumed = read_stream(client, f"{V1}/runs/{seeded.run_id}/events", headers={"Last-Event-ID": str(ids[2])})
    assert [int(e["id"]) for e in resumed[:-1]] == ids[3:] and resumed[-1]["event"] == "end"
    by_query = read_stream(client, f"{V1}/runs/{seeded.run_id}/events?last_event_id={ids[5]}")
    assert [int(e["id"]) for e in by_query[:-1]] == ids[6:]
    assert read_stream(client, f"{V1}/runs/{seeded.run_id}/events?last_event_id={ids[-1]}")[0]["event"] == "end"


def test_stream_follows_a_live_run_until_it_ends(api):
    """Rows written while the client is connected arrive, then `end` once the run is final."""
    client, db = api
    seeded = api_seed.seed_run(db, status="running", steps=1, per_step=1)
    before = event_types(db, seeded.run_id)
    seen = []

    def on_event(block):  # the test plays the worker: write as soon as the client has seen everything
        seen.append(block)
        if len(seen) == len(before):
            with session_scope(db) as s:
                s.add(Event(run_id=seeded.run_id, type="step", ref_id=99, payload={"live": True}))
        elif len(seen) == len(before) + 1:
            with session_scope(db) as s:
                s.add(Event(run_id=seeded.run_id, type="status", payload={"status": "finished"}))
            api_seed.set_status(db, seeded.run_id, "finished")

    got = read_stream(client, f"{V1}/runs/{seeded.run_id}/events", on_event=on_event)
    assert [e["event"] for e in got] == before + ["step", "status", "end"]
    assert json.loads(got[len(before)]["data"])["payload"] == {"live": True}
    ids = [int(e["id"]) for e in got[:-1]]
    assert ids == sorted(ids) and ids == event_ids(db, seeded.run_id)


def test_stream_errors(api):
    client, db = api
    seeded = api_seed.seed_run(db, status="finished", steps=1, per_step=1)
    assert client.get(f"{V1}/runs/424242/events").status_code == 404
    r = client.get(f"{V1}/runs/{seeded.run_id}/events", headers={"Last-Event-ID": "abc"})
    assert r.status_code == 422 and r.json()["error"]["fields"][0]["path"] == "Last-Event-ID"
    assert client.get(f"{V1}/runs/{seeded.run_id}/events?last_event_id=-1").status_code == 422


def test_status_changes_made_through_the_api_are_streamed(api):
    client, _ = api
    rid = client.post(f"{V1}/runs", json={"preset": "tiny"}).json()["id"]
    client.post(f"{V1}/runs/{rid}/pause")
    client.post(f"{V1}/runs/{rid}/cancel")
    got = read_stream(client, f"{V1}/runs/{rid}/events")
    assert [(e["event"], json.loads(e["data"])["payload"].get("status")) for e in got[:-1]] == [
        ("status", "queued"), ("status", "paused"), ("status", "cancelled")]


def test_open_streams_are_capped(api):
    """At most ``max_event_streams`` streams at once (503 beyond, naming the setting); a stream that ends
    frees its place."""
    client, db = api
    seeded = api_seed.seed_run(db, status="running", steps=1, per_step=1)
    api_seed.set_status(db, seeded.run_id, "finished")
    open_streams = client.app.state.open_streams
    assert read_stream(client, f"{V1}/runs/{seeded.run_id}/events")[-1]["event"] == "end"
    assert open_streams == [0]
    open_streams[0] = client.app.state.settings.max_event_streams  # as many as allowed are open
    r = client.get(f"{V1}/runs/{seeded.run_id}/events")
    assert r.status_code == 503 and "OPCOD_MAX_EVENT_STREAMS" in r.json()["error"]["message"]
    open_streams[0] -= 1
    assert read_stream(client, f"{V1}/runs/{seeded.run_id}/events")[-1]["event"] == "end"
    assert open_streams[0] == client.app.state.settings.max_event_streams - 1
