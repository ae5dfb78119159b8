"""The run archive (``GET /api/v1/runs/{id}/export?format=zip``, ``app.services.export.archive``) on SQLite and
PostgreSQL: a three-student run recorded through the worker's recorder (``seed.seed_events``); the archive's
``flows.json`` is the tutoring-flow matrix exactly as ``GET /runs/{id}/flows`` answers it (and its cells are
the counts of the stored rows), its ``trust.json`` is ``GET /runs/{id}/trust``, and its ``exchanges.jsonl`` is the
JSON Lines export's exchange lines, byte for byte (the trust changes that follow them there are in ``trust.json``;
``tests/app/test_trust.py`` checks a run that has some)."""

from __future__ import annotations

import io
import json
import zipfile

import pytest

from app.services import export
from seed import seed_events
from test_flows import cells_of, check_against_rows, flow_events

STUDENTS = ("chem", "phys", "bio")


def _archive(client, run_id: int) -> zipfile.ZipFile:
    r = client.get(f"/api/v1/runs/{run_id}/export", params={"format": "zip"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/zip"
    assert r.headers["content-disposition"] == f'attachment; filename="run-{run_id}.zip"'
    return zipfile.ZipFile(io.BytesIO(r.content))


def test_the_archive_holds_the_flow_matrix_of_the_api_and_the_exchanges(api):
    client, db = api
    seeded = seed_events(db, flow_events(STUDENTS, skip={("bio", "chem")}), name="trio", students=STUDENTS)
    seed_events(db, flow_events(("chem", "phys"), rounds=1), name="other")   # another run's rows stay out
    zf = _archive(client, seeded.run_id)
    assert sorted(zf.namelist()) == ["exchanges.jsonl", "flows.json", "trust.json"]
    assert json.loads(zf.read("trust.json")) == client.get(f"/api/v1/runs/{seeded.run_id}/trust").json()
    matrix = json.loads(zf.read("flows.json"))
    assert matrix == client.get(f"/api/v1/runs/{seeded.run_id}/flows").json()
    assert matrix["run_id"] == seeded.run_id and matrix["students"] == list(STUDENTS)
    cells = check_against_rows(db, seeded.run_id, matrix)
    assert len({k[:2] for k in cells}) == 6 and sum(c["kept"] for c in cells.values()) > 0
    assert all(c["exchanges"] == 0 for k, c in cells.items() if k[:2] == ("bio", "chem"))   # never paired
    jsonl = client.get(f"/api/v1/runs/{seeded.run_id}/export", params={"format": "jsonl"}).content
    assert zf.read("exchanges.jsonl") == jsonl
    lines = [json.loads(x) for x in jsonl.decode().splitlines()]
    assert {x["run_id"] for x in lines} == {seeded.run_id}
    assert len(lines) == sum(c["exchanges"] for c in cells_of(matrix).values())


def test_the_archive_streams_the_exchanges_in_chunks(api):
    client, db = api
    seeded = seed_events(db, flow_events(STUDENTS, rounds=1, per_step=3), name="chunks", students=STUDENTS)
    small = zipfile.ZipFile(io.BytesIO(b"".join(export.archive(db, seeded.run_id, chunk=4))))
    whole = _archive(client, seeded.run_id)
    assert small.read("exchanges.jsonl") == whole.read("exchanges.jsonl")
    assert small.read("flows.json") == whole.read("flows.json")


def test_a_run_without_exchanges_has_an_empty_matrix_and_no_lines(api):
    client, db = api
    seeded = seed_events(db, [], name="empty")
    zf = _archive(client, seeded.run_id)
    assert zf.read("exchanges.jsonl") == b""
    matrix = json.loads(zf.read("flows.json"))
    assert matrix["students"] == ["chem", "phys"] and all(c["exchanges"] == 0 for c in cells_of(matrix).values())


@pytest.mark.parametrize("query", ["format=zip", "format=tar"])
def test_unknown_run_or_format(api, query):
    client, _ = api
    r = client.get(f"/api/v1/runs/987654/export?{query}")
    assert r.status_code == (404 if query == "format=zip" else 422), r.text
    assert r.headers["content-type"].startswith("application/json")
