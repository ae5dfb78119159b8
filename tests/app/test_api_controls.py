"""Overrides (validated, audited), approvals, replays, gates/evals/metrics and the JSONL export."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select

import api_seed

from app.db import session_scope
from app.models import Approval, Event, Exchange, Feedback, Override, Replay, Rollout
from app.types import utcnow

V1 = "/api/v1"


@pytest.fixture
def seeded_api(db_url, tmp_path):
    client, db = api_seed.open_api(db_url, tmp_path)
    with client:
        yield client, db, api_seed.seed_run(db, steps=2, per_step=3)


def test_exchange_overrides_are_validated_and_audited(seeded_api):
    client, db, seeded = seeded_api
    ex_id = seeded.exchange_ids[0]
    r = client.post(f"{V1}/exchanges/{ex_id}/override",
                    json={"kind": "edit", "text": "  Think about entropy.  ", "author": "alice"})
    assert r.status_code == 201, r.text
    ov = r.json()
    assert (ov["kind"], ov["status"], ov["author"], ov["payload"]) == ("edit", "pending", "alice",
                                                                       {"text": "Think about entropy."})
    assert ov["exchange_id"] == ex_id and ov["run_id"] == seeded.run_id and ov["applied_at_step"] is None
    assert client.post(f"{V1}/exchanges/{ex_id}/override", json={"kind": "reject"}).json()["author"] == "api"
    assert client.post(f"{V1}/exchanges/{ex_id}/override", json={"kind": "approve"}).status_code == 201
    for body, path in [({"kind": "edit"}, "text"), ({"kind": "edit", "text": "   "}, "text"),
                       ({"kind": "reject", "text": "x"}, "text"), ({"kind": "delete"}, "kind"),
                       ({"kind": "edit", "text": "x", "extra": 1}, "extra"), ({}, "kind"),
                       ({"kind": "edit", "text": "x", "author": ""}, "author")]:
        r = client.post(f"{V1}/exchanges/{ex_id}/override", json=body)
        assert r.status_code == 422, (body, r.text)
        assert path in [f["path"] for f in r.json()["error"]["fields"]], (body, r.json())
    audit = client.get(f"{V1}/runs/{seeded.run_id}/overrides").json()
    assert [(o["kind"], o["status"]) for o in audit] == [("edit", "pending"), ("reject", "pending"), ("approve", "pending")]
    assert client.get(f"{V1}/runs/{seeded.run_id}/overrides", params={"status": "applied"}).json() == []
    assert [o["id"] for o in client.get(f"{V1}/exchanges/{ex_id}").json()["overrides"]] == [o["id"] for o in audit]
    assert client.get(f"{V1}/runs/{seeded.run_id}").json()["counts"]["pending_overrides"] == 3
    with session_scope(db) as s:
        evs = s.scalars(select(Event).where(Event.run_id == seeded.run_id, Event.type == "override")).all()
        assert sorted(e.ref_id for e in evs) == sorted(o["id"] for o in audit)

    # the worker applies the edit at step 5: a human exchange made from it, with provenance
    with session_scope(db) as s:
        o = s.get(Override, ov["id"])
        o.status, o.applied_at, o.applied_at_step = "applied", utcnow(), 5
        orig = s.get(Exchange, ex_id)
        ro = s.get(Rollout, orig.rollout_id)
        fb = Feedback(rollout_id=ro.id, tutor=orig.tutor, raw="Think about entropy.", used_text="Think about entropy.",
                      source="human", category="kept")
        s.add(fb)
        s.flush()
        human = Exchange(run_id=orig.run_id, key=orig.key + "-human", step_id=orig.step_id, rollout_id=ro.id,
                         feedback_id=fb.id, round=orig.round, direction=orig.direction, global_step=5,
                         tutee=orig.tutee, tutor=orig.tutor, domain=orig.domain, correct=orig.correct,
                         category="kept", human_edited=True, origin_exchange_id=orig.id, override_id=o.id,
                         context_used="s+f")
        s.add(human)
        s.flush()
        human_id = human.id
    got = client.get(f"{V1}/exchanges/{human_id}").json()
    assert got["human_edited"] and got["origin_exchange_id"] == ex_id and got["feedback"]["source"] == "human"
    assert (got["provenance"]["id"], got["provenance"]["applied_at_step"], got["provenance"]["status"]) == (ov["id"], 5, "applied")
    assert client.get(f"{V1}/exchanges/{ex_id}").json()["derived_exchange_ids"] == [human_id]
    assert client.get(f"{V1}/overrides/{ov['id']}").json()["applied_at_step"] == 5


def test_exchange_override_needs_feedback_for_reject_and_an_open_run(seeded_api):
    client, db, seeded = seeded_api
    ex_id = seeded.exchange_ids[1]
    with session_scope(db) as s:
        s.get(Exchange, ex_id).feedback_id = None
    r = client.post(f"{V1}/exchanges/{ex_id}/override", json={"kind": "reject"})
    assert r.status_code == 422 and r.json()["error"]["fields"][0]["path"] == "kind"
    assert client.post(f"{V1}/exchanges/{ex_id}/override", json={"kind": "edit", "text": "a hint"}).status_code == 201
    api_seed.set_status(db, seeded.run_id, "finished")
    r = client.post(f"{V1}/exchanges/{ex_id}/override", json={"kind": "edit", "text": "late"})
    assert r.status_code == 409 and "finished" in r.json()["error"]["message"]
    assert client.post(f"{V1}/runs/{seeded.run_id}/overrides", json={"kind": "set_tau", "value": 0.3}).status_code == 409


def test_run_overrides_are_validated(seeded_api):
    client, _, seeded = seeded_api
    url = f"{V1}/runs/{seeded.run_id}/overrides"
    ok = [({"kind": "force_tutor", "student": "phys"}, {"student": "phys"}),
          ({"kind": "mute_tutor", "student": "chem", "author": "bob"}, {"student": "chem"}),
          ({"kind": "clear_tutor", "student": "chem"}, {"student": "chem"}),
          ({"kind": "set_tau", "value": 0.35}, {"value": 0.35}),
          ({"kind": "set_mode", "value": "always"}, {"value": "always"}),
          ({"kind": "quarantine", "student": "phys", "value": "  reads <b>badly</b> "},
           {"student": "phys", "value": "reads <b>badly</b>"}),
          ({"kind": "lift", "student": "phys"}, {"student": "phys"}),
          ({"kind": "quarantine", "student": "chem", "value": " "}, {"student": "chem"})]   # blank: no reason
    for body, payload in ok:
        r = client.post(url, json=body)
        assert r.status_code == 201, (body, r.text)
        assert r.json()["payload"] == payload and r.json()["exchange_id"] is None
    bad = [({"kind": "force_tutor"}, "student"), ({"kind": "force_tutor", "student": "bio"}, "student"),
           ({"kind": "mute_tutor", "student": "chem", "value": 1}, "value"),
           ({"kind": "set_tau"}, "value"), ({"kind": "set_tau", "value": -1}, "value"),
           ({"kind": "set_tau", "value": 11}, "value"), ({"kind": "set_tau", "value": "high"}, "value"),
           ({"kind": "set_tau", "value": 0.2, "student": "chem"}, "student"),
           ({"kind": "set_mode", "value": "sometimes"}, "value"), ({"kind": "set_mode", "value": 1}, "value"),
           ({"kind": "pause"}, "kind"), ({"kind": "quarantine"}, "student"),
           ({"kind": "quarantine", "student": "bio"}, "student"), ({"kind": "lift", "student": "chem", "value": 0.5}, "value"),
           ({"kind": "quarantine", "student": "chem", "value": "x" * 501}, "value"),
           ({"kind": "quarantine", "student": "chem", "value": "a\x00b"}, "(body)")]
    for body, path in bad:
        r = client.post(url, json=body)
        assert r.status_code == 422, (body, r.text)
        assert path in [f["path"] for f in r.json()["error"]["fields"]], (body, r.json())
    audit = client.get(url).json()
    assert [o["kind"] for o in audit] == [b["kind"] for b, _ in ok]
    assert audit[1]["author"] == "bob"


def test_approvals(seeded_api):
    client, db, seeded = seeded_api
    with session_scope(db) as s:
        ids = []
        for i in range(3):
            a = Approval(run_id=seeded.run_id, exchange_key=f"k{i}", payload={"key": f"k{i}", "feedback": "f"},
                         deadline=utcnow() + timedelta(minutes=5))
            s.add(a)
            s.flush()
            ids.append(a.id)
    pending = client.get(f"{V1}/runs/{seeded.run_id}/approvals").json()
    assert [a["id"] for a in pending] == ids and all(a["status"] == "pending" for a in pending)
    r = client.post(f"{V1}/approvals/{ids[0]}", json={"decision": "approve", "author": "carol"})
    assert r.status_code == 200 and (r.json()["status"], r.json()["decided_by"]) == ("approved", "carol")
    assert r.json()["decided_at"] is not None
    r = client.post(f"{V1}/approvals/{ids[0]}", json={"decision": "reject"})
    assert r.status_code == 409 and "approved" in r.json()["error"]["message"]
    assert client.post(f"{V1}/approvals/{ids[1]}", json={"decision": "edit"}).status_code == 422
    assert client.post(f"{V1}/approvals/{ids[1]}", json={"decision": "reject", "text": "x"}).status_code == 422
    assert client.post(f"{V1}/approvals/{ids[1]}", json={"decision": "maybe"}).status_code == 422
    r = client.post(f"{V1}/approvals/{ids[1]}", json={"decision": "edit", "text": "Better hint."})
    assert (r.json()["status"], r.json()["text"]) == ("edited", "Better hint.")
    assert [a["id"] for a in client.get(f"{V1}/runs/{seeded.run_id}/approvals").json()] == [ids[2]]
    everything = client.get(f"{V1}/runs/{seeded.run_id}/approvals", params={"status": "all"}).json()
    assert [a["status"] for a in everything] == ["approved", "edited", "pending"]
    assert client.get(f"{V1}/runs/{seeded.run_id}/approvals", params={"status": "nope"}).status_code == 422


def test_replays(seeded_api):
    client, db, seeded = seeded_api
    ex_id = seeded.exchange_ids[2]
    r = client.post(f"{V1}/exchanges/{ex_id}/replay", json={"feedback_text": "Consider the units."})
    assert r.status_code == 202, r.text
    rp = r.json()
    assert rp["status"] == "queued" and rp["inputs"] == {"feedback": "Consider the units.", "tutor_checkpoint": None}
    r = client.post(f"{V1}/exchanges/{ex_id}/replay", json={"tutor_checkpoint": f"step-{2:06d}"})
    assert r.status_code == 202
    inputs = r.json()["inputs"]
    ex = client.get(f"{V1}/exchanges/{ex_id}").json()
    assert inputs["tutor_checkpoint"].endswith(f"step-{2:06d}/{ex['tutor']}")  # the seeded run's 2 steps
    assert inputs["tutor_checkpoint_id"] == seeded.checkpoint_id and inputs["feedback"] is None
    assert client.post(f"{V1}/exchanges/{ex_id}/replay",
                       json={"tutor_checkpoint": seeded.checkpoint_id}).status_code == 202
    for body, path in [({"tutor_checkpoint": "nope"}, "tutor_checkpoint"), ({"tutor_checkpoint": 10**6}, "tutor_checkpoint"),
                       ({"tutor_checkpoint": "../../etc"}, "tutor_checkpoint"), ({"feedback_text": 3}, "feedback_text"),
                       ({"feedback": "a", "feedback_text": "b"}, "feedback"), ({"colour": 1}, "colour")]:
        r = client.post(f"{V1}/exchanges/{ex_id}/replay", json=body)
        assert r.status_code == 422, (body, r.text)
        assert path in [f["path"] for f in r.json()["error"]["fields"]], (body, r.json())
    # a worker serves it
    with session_scope(db) as s:
        row = s.get(Replay, rp["id"])
        row.status, row.result, row.finished_at = "done", {"effect": [0.1, -0.2], "before": {}, "after": {}}, utcnow()
    got = client.get(f"{V1}/replays/{rp['id']}").json()
    assert got["status"] == "done" and got["result"]["effect"] == [0.1, -0.2]
    assert len(client.get(f"{V1}/exchanges/{ex_id}").json()["replays"]) == 3


def test_gates_evals_metrics(seeded_api):
    client, _, seeded = seeded_api
    rid = seeded.run_id
    gates = client.get(f"{V1}/runs/{rid}/gates").json()
    assert [(g["round"], g["student"]) for g in gates] == [(1, "chem"), (1, "phys"), (2, "chem"), (2, "phys")]
    assert [g["round"] for g in client.get(f"{V1}/runs/{rid}/gates", params={"round": 2}).json()] == [2, 2]
    evals = client.get(f"{V1}/runs/{rid}/evals").json()
    assert len(evals) == 8 and {e["round"] for e in evals} == {0, 1}
    assert client.get(f"{V1}/runs/{rid}/evals", params={"split": "validation"}).json() == []
    m = client.get(f"{V1}/runs/{rid}/metrics", params={"keys": "loss/jsd"}).json()
    assert m == {"keys": ["loss/jsd"], "series": {"loss/jsd": [[0, 0.0], [1, 0.5]]}, "next_since_step": None}
    m = client.get(f"{V1}/runs/{rid}/metrics?keys=loss/jsd,gate/delta&keys=nope").json()
    assert m["keys"] == ["loss/jsd", "gate/delta", "nope"] and m["series"]["nope"] == []
    assert sorted(client.get(f"{V1}/runs/{rid}/metrics").json()["keys"]) == ["gate/delta", "loss/jsd"]
    m = client.get(f"{V1}/runs/{rid}/metrics", params={"keys": "loss/jsd", "since_step": 0}).json()
    assert m["series"]["loss/jsd"] == [[1, 0.5]]


def test_export_jsonl(seeded_api):
    client, _, seeded = seeded_api
    r = client.get(f"{V1}/runs/{seeded.run_id}/export", params={"format": "jsonl"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ndjson")
    assert "attachment" in r.headers["content-disposition"]
    rows = [json.loads(line) for line in r.text.splitlines()]
    assert [x["id"] for x in rows] == seeded.exchange_ids
    assert rows[0]["tokens"] == ["a", "b", "c", "d"] and rows[0]["divergence"] == [0.5, 0.25, 0.125, 1.0]
    assert rows[0]["gold"] == "B" and rows[0]["concept"] == "entropy" and rows[0]["type"] == "exchange"
    from opcod_core.events import ExchangeEvent
    assert all(ExchangeEvent.model_validate({k: v for k, v in x.items() if k in ExchangeEvent.model_fields})
               for x in rows)
    assert [x["finish_reason"] for x in rows] == [api_seed.finish_of(i) for i in range(len(rows))]
    assert client.get(f"{V1}/runs/{seeded.run_id}/export", params={"format": "csv"}).status_code == 422


def test_export_parquet_reads_in_pandas_polars_and_datasets(seeded_api, tmp_path):
    import datasets
    import pandas as pd
    import polars as pl

    client, _, seeded = seeded_api
    r = client.get(f"{V1}/runs/{seeded.run_id}/export", params={"format": "parquet"})
    assert r.status_code == 200 and r.headers["content-type"] == "application/vnd.apache.parquet"
    path = tmp_path / "x.parquet"
    path.write_bytes(r.content)
    lines = [json.loads(x) for x in client.get(f"{V1}/runs/{seeded.run_id}/export").text.splitlines()]
    df = pd.read_parquet(path)
    assert list(df["id"]) == seeded.exchange_ids == [x["id"] for x in lines]
    assert list(df["tokens"][0]) == lines[0]["tokens"] and list(df["divergence"][0]) == lines[0]["divergence"]
    assert pl.read_parquet(path)["token_ids"].to_list() == [x["token_ids"] for x in lines]
    ds = datasets.load_dataset("parquet", data_files=str(path), split="train", cache_dir=str(tmp_path / "hf"))
    assert ds[0]["gold"] == lines[0]["gold"] and ds[0]["feedback_used"] == lines[0]["feedback_used"]
    assert json.loads(ds[0]["redactions"]) == lines[0]["redactions"]


def test_export_streams_in_chunks(seeded_api, monkeypatch):
    from app.services import export

    client, _, seeded = seeded_api
    monkeypatch.setattr(export, "CHUNK", 2)
    chunks = list(export.jsonl(client.app.state.db, seeded.run_id, chunk=2))
    assert len(chunks) == 3 and sum(c.count(b"\n") for c in chunks) == 6


def test_open_replays_are_capped_per_run(db_url, tmp_path):
    """At most ``max_open_replays`` queued or running replays per run (429 beyond, naming the setting); a
    finished one frees a place."""
    from app.main import create_app
    from app.settings import Settings

    app = create_app(Settings(data_dir=tmp_path / "data", database_url=db_url, max_open_replays=2))
    with api_seed.local_client(app) as client:
        db = app.state.db
        ex_id = api_seed.seed_run(db, steps=1, per_step=2).exchange_ids[0]
        first = [client.post(f"{V1}/exchanges/{ex_id}/replay", json={"feedback_text": f"hint {i}"}) for i in range(2)]
        assert [r.status_code for r in first] == [202, 202]
        r = client.post(f"{V1}/exchanges/{ex_id}/replay", json={"feedback_text": "one too many"})
        assert r.status_code == 429 and "OPCOD_MAX_OPEN_REPLAYS" in r.json()["error"]["message"]
        with session_scope(db) as s:
            s.get(Replay, first[0].json()["id"]).status = "done"
        assert client.post(f"{V1}/exchanges/{ex_id}/replay", json={"feedback_text": "now"}).status_code == 202
        with session_scope(db) as s:
            assert s.query(Replay).count() == 3


def test_lists_are_paged(seeded_api):
    """Overrides, approvals, checkpoints and metric series come in bounded pages with a next link."""
    client, db, seeded = seeded_api
    rid = seeded.run_id
    for i in range(5):
        assert client.post(f"{V1}/runs/{rid}/overrides", json={"kind": "set_tau", "value": 0.1 * i}).status_code == 201
    seen, url = [], f"{V1}/runs/{rid}/overrides?limit=2"
    while url:
        r = client.get(url)
        assert r.status_code == 200 and len(r.json()) <= 2
        seen += [o["id"] for o in r.json()]
        url = r.headers.get("link", "").partition(">")[0].lstrip("<") or None
    everything = client.get(f"{V1}/runs/{rid}/overrides?limit=1000").json()
    assert seen == [o["id"] for o in everything] and len(seen) >= 5 and "link" not in client.get(
        f"{V1}/runs/{rid}/overrides?limit=1000").headers
    r = client.get(f"{V1}/runs/{rid}/checkpoints?limit=1")
    assert r.status_code == 200 and len(r.json()) == 1
    assert client.get(f"{V1}/runs/{rid}/approvals?status=all&limit=1").status_code == 200
    for bad in ("limit=0", "limit=100000", "after_id=-1"):
        assert client.get(f"{V1}/runs/{rid}/overrides?{bad}").status_code == 422, bad
    m = client.get(f"{V1}/runs/{rid}/metrics?max_steps=1").json()
    assert m["next_since_step"] is not None and all(len(v) <= 1 for v in m["series"].values())
    rest = client.get(f"{V1}/runs/{rid}/metrics?since_step={m['next_since_step']}").json()
    full = client.get(f"{V1}/runs/{rid}/metrics").json()
    assert {k: m["series"][k] + rest["series"][k] for k in full["keys"]} == full["series"]
