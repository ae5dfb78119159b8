"""Every HTML form route fuzzed (hypothesis): arbitrary field values (unicode, NUL, huge numbers, long
text, missing fields) posted with the session's CSRF token, as plain forms and as htmx requests, never
answer a server error, and a refused post is an HTML page or block, never JSON."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import api_seed
import seed

FUZZ = settings(max_examples=60, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
values = (st.text(max_size=40) | st.sampled_from(["", "0", "-1", "1e999", "9" * 40, "\x00", "tiny", "chem", "phys",
                                                  "edit", "reject", "approve", "set_tau", "force_tutor", "always",
                                                  "approved", "task-000001", "x" * 5000, "tiny-trio", "add",
                                                  "remove:0", "remove:7", "0,1,new", "0,1,2", "new,new,new,new"]))
FIELDS = {
    "/runs/new": ["preset", "use_advanced", "config_text", "rollout.n", "gating.tau", "name", "students.0.model",
                  "student_rows", "row_action", "load_preset", "students.2.name", "data.domains"],
    "/runs/{run}/overrides": ["kind", "student", "tau", "mode"],
    "/runs/{run}/fork": ["checkpoint_id", "name", "overrides"],
    "/exchanges/{ex}/override": ["kind", "text"],
    "/exchanges/{ex}/replay": ["feedback_text", "tutor_checkpoint"],
    "/approvals/{approval}": ["decision", "text"],
    "/runs/{run}/pause": [], "/runs/{run}/resume": [], "/runs/{run}/cancel": [],
}


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    from app.db import upgrade
    from app.main import create_app
    from app.settings import Settings

    tmp = tmp_path_factory.mktemp("form-fuzz")
    url = f"sqlite:///{tmp / 'opcod.db'}"
    upgrade(url)
    app = create_app(Settings(data_dir=tmp / "data", database_url=url), sse_poll_s=0.01)
    with api_seed.local_client(app, raise_server_exceptions=False) as client:
        api_seed.with_csrf(client)
        ids = seed.dashboard_run(app.state.db, approval="manual")
        client.ids = {"run": ids["run"], "ex": ids["kept"], "approval": ids["approval"]}
        yield client


@pytest.mark.parametrize("route", sorted(FIELDS))
def test_form_routes_never_answer_a_server_error(web, route):
    path = route.format(**web.ids)
    statuses: set[int] = set()

    @FUZZ
    @given(form=st.fixed_dictionaries({}, optional={f: values for f in FIELDS[route]}), htmx=st.booleans(),
           id_=st.sampled_from([None, "0", "99999999999999999999", "-3", "abc"]))
    def post(form, htmx, id_):
        target = path if id_ is None else route.format(run=id_, ex=id_, approval=id_)
        r = web.post(target, data=form, headers={"HX-Request": "true"} if htmx else {}, follow_redirects=False)
        assert r.status_code < 500, (target, form, r.text[:300])
        statuses.add(r.status_code)
        if r.status_code >= 400:
            assert not r.headers.get("content-type", "").startswith("application/json"), (target, r.text[:200])

    post()
    assert statuses - {403}, statuses  # the posts got past the CSRF check to the routes themselves
