"""Runs through the REST API on SQLite and PostgreSQL: create, validate, read, list, state changes, fork."""

from __future__ import annotations


import pytest
from sqlalchemy import select

import api_seed

from app.db import session_scope
from app.models import Event
from opcod_core.config import preset

V1 = "/api/v1"


@pytest.fixture
def api(db_url, tmp_path):
    client, db = api_seed.open_api(db_url, tmp_path)
    with client:
        yield client, db


def test_create_from_preset_with_overrides(api):
    client, _ = api
    r = client.post(f"{V1}/runs", json={"preset": "tiny", "overrides": {"schedule": {"rounds": 1,
                                                                                   "steps_per_direction": 2}},
                                         "name": "mine"})
    assert r.status_code == 201, r.text
    run = r.json()
    assert run["status"] == "queued" and run["name"] == "mine" and run["preset"] == "tiny"
    assert run["config"]["schedule"] == {"rounds": 1, "steps_per_direction": 2, "tutor_first": False}
    assert run["progress"]["tasks_total"] == 1 + 1 * (2 * 2 + 2)
    assert [s["name"] for s in run["students"]] == ["chem", "phys"]
    got = client.get(f"{V1}/runs/{run['id']}").json()
    assert got["config"] == run["config"] and got["out_dir"].endswith(f"/runs/{run['id']}")
    listed = client.get(f"{V1}/runs").json()
    assert [x["id"] for x in listed["items"]] == [run["id"]] and listed["next_cursor"] is None


def test_create_from_full_config(api):
    client, _ = api
    cfg = preset("tiny").to_dict()
    cfg["name"] = "full"
    cfg["rollout"]["n"] = 2
    r = client.post(f"{V1}/runs", json=cfg)
    assert r.status_code == 201, r.text
    assert r.json()["config"]["rollout"]["n"] == 2 and r.json()["name"] == "full"


def test_create_with_three_students(api):
    """A run of three peers (issue 17): three student rows in order, N x K steps per round in the task count,
    and a ninth student refused with the field named."""
    client, _ = api
    cfg = preset("tiny").to_dict()
    third = {**cfg["students"][0], "name": "bio"}
    cfg.update(name="trio", students=cfg["students"] + [third], schedule={"rounds": 1, "steps_per_direction": 2})
    r = client.post(f"{V1}/runs", json=cfg)
    assert r.status_code == 201, r.text
    run = r.json()
    assert [s["name"] for s in run["students"]] == ["chem", "phys", "bio"]
    assert run["progress"]["tasks_total"] == 1 + 1 * (3 * 2 + 2)
    cfg["students"] = [{**third, "name": f"p{i}"} for i in range(9)]
    r = client.post(f"{V1}/runs", json=cfg)
    assert r.status_code == 422 and "students" in r.text


@pytest.mark.parametrize("body, path", [
    ({"preset": "tiny", "overrides": {"rollout": {"n": 0}}}, "rollout.n"),
    ({"preset": "tiny", "overrides": {"gating": {"tau": "not-a-number"}}}, "gating.tau"),
    ({"preset": "tiny", "overrides": {"rollout": {"nn": 3}}}, "rollout.nn"),
    ({"preset": "no-such-preset"}, "preset"),
    ({"preset": "tiny", "overrides": [1, 2]}, "overrides"),
    ({"preset": "tiny", "colour": "red"}, "colour"),
    ({"name": "x"}, "students"),
    ([1, 2, 3], "(body)"),
])
def test_invalid_configs_are_422_with_the_field_path(api, body, path):
    client, _ = api
    r = client.post(f"{V1}/runs", json=body)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["message"]
    assert path in [f["path"] for f in err["fields"]], err


def test_values_no_database_can_store_are_422(api):
    client, _ = api
    for raw, path in [(b'{"preset": "tiny", "overrides": {"data": {"fractions": [NaN, 0.5, 0.5]}}}', "data.fractions.0"),
                      (b'{"preset": "tiny", "overrides": {"gating": {"tau": Infinity}}}', "gating.tau"),
                      (b'{"preset": "tiny", "name": "a\\u0000b"}', "name")]:
        r = client.post(f"{V1}/runs", content=raw, headers={"content-type": "application/json"})
        assert r.status_code == 422, r.text
        assert [f["path"] for f in r.json()["error"]["fields"]] == [path]
    big_cursor = api_seed_cursor(2**40)
    assert client.get(f"{V1}/runs", params={"cursor": big_cursor}).status_code == 200


def api_seed_cursor(before: int) -> str:
    from app.services import encode_cursor

    return encode_cursor(before)


def test_empty_and_malformed_bodies(api):
    client, _ = api
    assert client.post(f"{V1}/runs", content=b"").status_code == 422
    r = client.post(f"{V1}/runs", content=b'{"preset": "tiny",', headers={"content-type": "application/json"})
    assert r.status_code == 400 and "malformed JSON" in r.json()["error"]["message"]
    assert client.post(f"{V1}/runs", content=b"\xff\xfe", headers={"content-type": "application/json"}).status_code == 400
    r = client.post(f"{V1}/runs", content=b'{"preset": "tiny"}', headers={"content-type": "text/plain"})
    assert r.status_code == 415 and "application/json" in r.json()["error"]["message"]


UNKNOWN_ID_ROUTES = [
    ("get", "/runs/{id}"), ("post", "/runs/{id}/pause"), ("post", "/runs/{id}/resume"),
    ("post", "/runs/{id}/cancel"), ("get", "/runs/{id}/gates"), ("get", "/runs/{id}/evals"),
    ("get", "/runs/{id}/metrics"), ("get", "/runs/{id}/exchanges"), ("get", "/runs/{id}/events"),
    ("get", "/runs/{id}/export"), ("get", "/runs/{id}/approvals"), ("get", "/runs/{id}/checkpoints"),
    ("get", "/runs/{id}/overrides"), ("get", "/exchanges/{id}"), ("get", "/replays/{id}"),
    ("get", "/overrides/{id}"),
]


def test_unknown_ids_are_404(api):
    client, _ = api
    for method, path in UNKNOWN_ID_ROUTES:
        for ident in (987654321, 0, -5, 10**30):
            r = getattr(client, method)(V1 + path.format(id=ident))
            assert r.status_code == 404, (method, path, ident, r.text)
            assert "not found" in r.json()["error"]["message"]


def test_unknown_ids_on_posts_with_bodies_are_404(api):
    client, _ = api
    assert client.post(f"{V1}/runs/999/fork", json={}).status_code == 404
    assert client.post(f"{V1}/runs/999/overrides", json={"kind": "set_tau", "value": 0.3}).status_code == 404
    assert client.post(f"{V1}/exchanges/999/override", json={"kind": "reject"}).status_code == 404
    assert client.post(f"{V1}/exchanges/999/replay", json={"feedback_text": "x"}).status_code == 404
    assert client.post(f"{V1}/approvals/999", json={"decision": "approve"}).status_code == 404
    assert client.get(f"{V1}/runs/abc").status_code == 422


def _status_events(db, run_id):
    with session_scope(db) as s:
        return [(e.type, e.payload) for e in s.scalars(select(Event).where(Event.run_id == run_id).order_by(Event.id))]


def test_pause_resume_cancel_of_a_queued_run(api):
    client, db = api
    rid = client.post(f"{V1}/runs", json={"preset": "tiny"}).json()["id"]
    assert client.post(f"{V1}/runs/{rid}/pause").json()["status"] == "paused"
    assert client.post(f"{V1}/runs/{rid}/pause").json()["status"] == "paused"  # idempotent
    assert client.post(f"{V1}/runs/{rid}/resume").json()["status"] == "queued"
    assert client.post(f"{V1}/runs/{rid}/resume").json()["status"] == "queued"
    r = client.post(f"{V1}/runs/{rid}/cancel").json()
    assert r["status"] == "cancelled" and r["finished_at"] is not None
    assert client.post(f"{V1}/runs/{rid}/cancel").status_code == 200
    for action in ("pause", "resume"):
        r = client.post(f"{V1}/runs/{rid}/{action}")
        assert r.status_code == 409 and "cancelled" in r.json()["error"]["message"]
    assert [p["status"] for t, p in _status_events(db, rid) if t == "status"] == ["queued", "paused", "queued", "cancelled"]


def test_pause_resume_cancel_of_a_running_run_are_requests_for_the_worker(api):
    client, db = api
    seeded = api_seed.seed_run(db, status="running", steps=1, per_step=1)
    rid = seeded.run_id
    r = client.post(f"{V1}/runs/{rid}/pause").json()
    assert (r["status"], r["requested_action"]) == ("running", "pause")
    r = client.post(f"{V1}/runs/{rid}/resume").json()  # the pause was not taken yet: withdrawn
    assert (r["status"], r["requested_action"]) == ("running", None)
    r = client.post(f"{V1}/runs/{rid}/cancel").json()
    assert (r["status"], r["requested_action"]) == ("running", "cancel")
    assert client.post(f"{V1}/runs/{rid}/pause").status_code == 409
    assert client.post(f"{V1}/runs/{rid}/resume").status_code == 409
    # the worker takes the pause: paused -> resume -> queued
    api_seed.set_status(db, rid, "paused", requested_action=None)
    assert client.post(f"{V1}/runs/{rid}/resume").json()["status"] == "queued"
    for final in ("finished", "failed"):
        api_seed.set_status(db, rid, final)
        for action in ("pause", "cancel") + (("resume",) if final == "finished" else ()):
            assert client.post(f"{V1}/runs/{rid}/{action}").status_code == 409


def test_a_failed_run_resumes_from_its_last_checkpoint(api):
    # e.g. a Ray actor lost mid-run: resume queues the run again, error cleared; the worker that
    # claims it restarts from the latest checkpoint in the run's directory
    client, db = api
    rid = api_seed.seed_run(db, status="running", steps=1, per_step=1).run_id
    api_seed.set_status(db, rid, "failed", error="StudentActorLost: student chem: its Ray actor died")
    assert client.get(f"{V1}/runs/{rid}").json()["error"].startswith("StudentActorLost")
    r = client.post(f"{V1}/runs/{rid}/resume")
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["status"], body["error"], body["finished_at"]) == ("queued", None, None)
    assert client.post(f"{V1}/runs/{rid}/resume").json()["status"] == "queued"  # idempotent


def test_run_detail_and_listing(api):
    client, db = api
    seeded = api_seed.seed_run(db, status="running", steps=3, per_step=2)
    other = api_seed.seed_run(db, status="finished", steps=1, per_step=1, gates=False)
    r = client.get(f"{V1}/runs/{seeded.run_id}").json()
    assert r["latest_step"] == 2 and r["latest_metrics"]["loss/jsd"] == pytest.approx(1.0)  # 0.5 x step 2
    assert r["progress"]["global_step"] == 2 and 0 < r["progress"]["fraction"] < 1  # the last recorded step
    assert {(g["round"], g["student"], g["decision"]) for g in r["gates"]} == {
        (1, "chem", "tutor"), (1, "phys", "silent"), (2, "chem", "tutor"), (2, "phys", "silent")}
    assert r["counts"] == {"pending_overrides": 0, "pending_approvals": 0, "open_replays": 0}
    page = client.get(f"{V1}/runs", params={"limit": 1}).json()
    assert [x["id"] for x in page["items"]] == [other.run_id]
    page2 = client.get(f"{V1}/runs", params={"limit": 1, "cursor": page["next_cursor"]}).json()
    assert [x["id"] for x in page2["items"]] == [seeded.run_id] and page2["next_cursor"] is None
    assert [x["id"] for x in client.get(f"{V1}/runs", params={"status": "finished"}).json()["items"]] == [other.run_id]
    assert client.get(f"{V1}/runs", params={"status": "bogus"}).status_code == 422


def test_fork_from_a_checkpoint(api):
    client, db = api
    seeded = api_seed.seed_run(db, status="paused", steps=1, per_step=1)
    r = client.post(f"{V1}/runs/{seeded.run_id}/fork", json={"overrides": {"gating": {"tau": 0.5}}})
    assert r.status_code == 201, r.text
    fork = r.json()
    assert fork["status"] == "queued" and fork["parent_run_id"] == seeded.run_id
    assert fork["fork_checkpoint"].endswith("step-000001") and fork["config"]["gating"]["tau"] == 0.5
    assert "fork of" in fork["name"]
    ck = client.get(f"{V1}/runs/{seeded.run_id}/checkpoints").json()
    assert [c["id"] for c in ck] == [seeded.checkpoint_id]
    r = client.post(f"{V1}/runs/{seeded.run_id}/fork", json={"checkpoint_id": seeded.checkpoint_id, "name": "f2"})
    assert r.status_code == 201 and r.json()["name"] == "f2"
    assert client.post(f"{V1}/runs/{seeded.run_id}/fork", json={"checkpoint_id": 99999}).status_code == 404
    r = client.post(f"{V1}/runs/{seeded.run_id}/fork",
                    json={"overrides": {"students": [{"model": "tiny:qwen2"}, {}]}})
    assert r.status_code == 422 and r.json()["error"]["fields"][0]["path"] == "overrides.students"
    r = client.post(f"{V1}/runs/{seeded.run_id}/fork", json={"overrides": {"rollout": {"n": -1}}})
    assert r.status_code == 422 and r.json()["error"]["fields"][0]["path"] == "overrides.rollout.n"
    fresh = client.post(f"{V1}/runs", json={"preset": "tiny"}).json()["id"]
    assert client.post(f"{V1}/runs/{fresh}/fork", json={}).status_code == 409


def test_presets(api):
    client, _ = api
    got = client.get(f"{V1}/presets").json()
    assert [p["name"] for p in got] == ["tiny", "tiny-trio", "demo", "paper", "sciworld", "sciworld3", "sciworld3-trio"]
    assert got[0]["config"] == preset("tiny").to_dict()
    trio = got[1]["config"]
    assert [s["name"] for s in trio["students"]] == ["chem", "phys", "bio"] and trio == preset("tiny-trio").to_dict()


def test_allowed_actions_are_exactly_the_requests_that_change_the_run(api):
    """The run page shows the buttons ``app.lifecycle.allowed_actions`` returns: for every (status,
    requested action) a run can be in, an allowed action changes the run and any other is a no-op or a
    409, so a page never offers what the service refuses or silently ignores."""
    from app.lifecycle import allowed_actions
    from opcod_core.vocabulary import RunAction, RunStatus

    client, db = api
    rid = api_seed.seed_run(db, status="running", steps=1, per_step=1).run_id
    for status in RunStatus:
        for requested in (None, *RunAction):
            if requested is not None and status != RunStatus.RUNNING:
                continue   # only a running run carries a request for its worker
            for action in ("pause", "resume", "cancel"):
                api_seed.set_status(db, rid, status.value, requested_action=requested and requested.value)
                before = client.get(f"{V1}/runs/{rid}").json()
                r = client.post(f"{V1}/runs/{rid}/{action}")
                changed = r.status_code == 200 and (r.json()["status"], r.json()["requested_action"]) != (
                    before["status"], before["requested_action"])
                assert changed == (action in allowed_actions(status.value, requested and requested.value)), (
                    status, requested, action, r.status_code)


def test_post_runs_documents_its_union_body(api):
    """The body of POST /runs is documented from the models: a preset with overrides or a full RunConfig
    (every field of the config in the components, not a free-form object)."""
    client, _ = api
    doc = client.get("/openapi.json").json()
    body = doc["paths"][f"{V1}/runs"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert body["oneOf"] == [{"$ref": "#/components/schemas/RunCreateFromPreset"},
                             {"$ref": "#/components/schemas/RunConfig"}]
    comps = doc["components"]["schemas"]
    assert {"students", "rollout", "gating", "schedule"} <= set(comps["RunConfig"]["properties"])
    assert "preset" in comps["RunCreateFromPreset"]["required"]

