"""Property-based fuzzing of the API (hypothesis): whatever the body, query or header, never a 5xx, and
every error has the JSON error shape. Bodies mix arbitrary JSON with route-shaped objects whose values
are arbitrary, so validation is exercised past the first layer (inside configs and overrides)."""

from __future__ import annotations


import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import api_seed

V1 = "/api/v1"
FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                         HealthCheck.too_slow])

scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=30)
           | st.sampled_from(["tiny", "chem", "phys", "edit", "reject", "approve", "set_tau", "always", "\x00", ""]))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)


def shaped(keys: list[str]):
    return st.fixed_dictionaries({}, optional={k: json_values for k in keys})


config_overrides = st.fixed_dictionaries({}, optional={
    "rollout": shaped(["n", "temperature", "max_new_tokens", "stop"]),
    "gating": shaped(["tau", "mode", "val_k"]), "schedule": shaped(["rounds", "steps_per_direction"]),
    "students": st.lists(shaped(["name", "model", "strong_domain"]), max_size=3),
    "data": shaped(["source", "domains", "fractions", "path"]), "name": json_values, "seed": json_values,
})

BODIES = {
    "/runs": st.one_of(json_values, shaped(["preset", "overrides", "name", "students"]),
                       st.fixed_dictionaries({"preset": st.sampled_from(["tiny", "demo", "x"]),
                                              "overrides": config_overrides})),
    "/runs/{run}/fork": st.one_of(json_values, st.fixed_dictionaries({}, optional={
        "checkpoint_id": json_values, "overrides": config_overrides, "name": json_values})),
    "/runs/{run}/overrides": st.one_of(json_values, st.fixed_dictionaries(
        {"kind": st.sampled_from(["force_tutor", "mute_tutor", "clear_tutor", "set_tau", "set_mode", "x"])},
        optional={"student": json_values, "value": json_values, "author": json_values})),
    "/exchanges/{exchange}/override": st.one_of(json_values, st.fixed_dictionaries(
        {"kind": st.sampled_from(["edit", "reject", "approve", "x"])},
        optional={"text": json_values, "author": json_values})),
    "/exchanges/{exchange}/replay": st.one_of(json_values, shaped(["feedback_text", "feedback", "tutor_checkpoint"])),
    "/approvals/{approval}": st.one_of(json_values, st.fixed_dictionaries(
        {"decision": st.sampled_from(["approve", "reject", "edit", "x"])},
        optional={"text": json_values, "author": json_values})),
    "/runs/{run}/pause": st.just(None), "/runs/{run}/resume": st.just(None), "/runs/{run}/cancel": st.just(None),
}

ids = st.one_of(st.sampled_from(["{id}"]), st.integers(min_value=-(2**65), max_value=2**65).map(str),
                st.sampled_from(["abc", "1.5", "%00", "9" * 40]))


@pytest.fixture
def fuzz_api(db_url, tmp_path):
    from datetime import timedelta

    from app.db import session_scope
    from app.models import Approval
    from app.types import utcnow

    client, db = api_seed.open_api(db_url, tmp_path)
    with client:
        running = api_seed.seed_run(db, status="running", steps=1, per_step=2)
        finished = api_seed.seed_run(db, status="finished", steps=1, per_step=2)
        with session_scope(db) as s:
            ap = Approval(run_id=running.run_id, exchange_key="k", deadline=utcnow() + timedelta(minutes=1))
            s.add(ap)
            s.flush()
            approval_id = ap.id
        real = {"run": running.run_id, "exchange": running.exchange_ids[0], "approval": approval_id}
        yield client, real, finished


def check(r):
    assert r.status_code < 500, (r.request.method, str(r.request.url), r.status_code, r.text)
    if r.status_code >= 400:
        err = r.json()["error"]
        assert isinstance(err["message"], str) and isinstance(err["fields"], list)


@FUZZ
@given(data=st.data())
def test_posts_never_500(fuzz_api, data):
    client, real, _ = fuzz_api
    template = data.draw(st.sampled_from(sorted(BODIES)))
    path = template
    for name, value in real.items():
        ident = data.draw(ids, label=name)
        path = path.replace("{" + name + "}", str(value) if ident == "{id}" else ident)
    body = data.draw(BODIES[template], label="body")
    if body is None and data.draw(st.booleans()):
        r = client.post(V1 + path)
    else:
        import json

        raw = json.dumps(body)  # NaN/Infinity included: Python's JSON parser accepts them
        r = client.post(V1 + path, content=raw, headers={"content-type": "application/json"})
    check(r)


query_values = st.one_of(st.text(max_size=20), st.integers(min_value=-(2**65), max_value=2**65).map(str),
                         st.sampled_from(["true", "false", "1", "chemistry", "kept", "\x00", "", "eyJ2IjoxfQ"]))


@FUZZ
@given(data=st.data())
def test_gets_never_500(fuzz_api, data):
    client, real, finished = fuzz_api
    route = data.draw(st.sampled_from([
        ("/runs", ["status", "cursor", "limit"]),
        ("/runs/{run}/exchanges", ["domain", "round", "direction", "category", "correct", "human_edited",
                                   "tutee", "tutor", "cursor", "limit"]),
        ("/runs/{run}/metrics", ["keys", "since_step"]), ("/runs/{run}/gates", ["round"]),
        ("/runs/{run}/evals", ["split"]), ("/runs/{run}/approvals", ["status"]),
        ("/runs/{run}/overrides", ["status"]), ("/runs/{run}/export", ["format"]),
        ("/runs/{finished}/events", ["last_event_id"]), ("/exchanges/{exchange}", []), ("/replays/{exchange}", []),
        ("/runs/{run}", []), ("/runs/{run}/flows", []),
    ]))
    path, names = route
    path = path.replace("{finished}", str(finished.run_id))
    for name, value in real.items():
        path = path.replace("{" + name + "}", str(value))
    params = data.draw(st.dictionaries(st.sampled_from(names), query_values, max_size=len(names))) if names else {}
    headers = {}
    if "events" in path and data.draw(st.booleans()):
        headers["Last-Event-ID"] = data.draw(st.text(alphabet="0123456789-ab ", max_size=25))
    check(client.get(V1 + path, params=params, headers=headers))
