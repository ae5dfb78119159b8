"""The whole OpenAPI fuzzed against a live ``opcod serve`` (schemathesis, property-based): every operation,
with bodies, paths and queries generated from the published schema and beyond it, answers without a server
error. The database holds a seeded run, so ids in paths reach real rows as well as missing ones."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

import api_seed

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def live_schema(tmp_path_factory):
    data = tmp_path_factory.mktemp("fuzz") / "data"
    served = api_seed.Served(data, args=["--no-worker"])
    try:
        served.wait_healthy()
        from app.db import make_engine, session_factory

        engine = make_engine(f"sqlite:///{data / 'opcod.db'}")
        api_seed.seed_run(session_factory(engine), steps=2, per_step=2, status="finished")
        engine.dispose()
        yield schemathesis.openapi.from_url(served.base + "/openapi.json")
    finally:
        served.stop()


def test_no_operation_answers_a_server_error(live_schema):
    """Each operation in turn (schemathesis' pytest plugin does not load under this pytest, so the operations'
    hypothesis strategies are driven directly): 25 generated cases each."""
    checked = []
    for result in live_schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None,
                  derandomize=True)  # the same cases on every machine: a CI failure is reproducible
        def no_server_error(case):
            response = case.call(timeout=30)
            assert response.status_code < 500, (case.method, case.formatted_path, case.query, case.body,
                                                response.text[:300])

        no_server_error()
        checked.append(operation.label)
    assert len(checked) >= 20, checked  # every operation of the API was fuzzed
