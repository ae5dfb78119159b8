"""Bearer auth, the body size limit, malformed bodies, OpenAPI and the import rule of app.api."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import api_seed

V1 = "/api/v1"
TOKEN = "s3cret-token"


@pytest.fixture
def secured(db_url, tmp_path):
    client, db = api_seed.open_api(db_url, tmp_path, token=TOKEN, max_body_bytes=2048,
                                   auth_failures_per_minute=1000)  # these tests fail on purpose, often
    with client:
        yield client


def test_token_required_on_every_api_call(secured):
    client = secured
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN},
                    {"Authorization": f"Basic {TOKEN}"}, {"Authorization": f"Bearer {TOKEN}x"}):
        for method, path in (("get", "/runs"), ("get", "/presets"), ("get", "/runs/1/events"),
                             ("post", "/runs")):
            r = getattr(client, method)(V1 + path, headers=headers)
            assert r.status_code == 401, (headers, path, r.text)
            assert r.headers["www-authenticate"] == "Bearer" and r.json()["error"]["message"]
    # unauthenticated clients learn nothing about their body
    assert client.post(f"{V1}/runs", content=b"{bad").status_code == 401
    ok = {"Authorization": f"Bearer {TOKEN}"}
    assert client.get(f"{V1}/runs", headers=ok).status_code == 200
    assert client.get(f"{V1}/runs", headers={"authorization": f"bearer {TOKEN}"}).status_code == 200
    assert client.post(f"{V1}/runs", json={"preset": "tiny"}, headers=ok).status_code == 201
    assert client.get("/healthz").json() == {"status": "ok", "database": "ok"}
    assert client.get("/openapi.json").status_code == 200 and client.get("/docs").status_code == 200


def test_no_token_configured_means_open(db_url, tmp_path):
    client, _ = api_seed.open_api(db_url, tmp_path)
    with client:
        assert client.get(f"{V1}/runs").status_code == 200


def test_body_too_large_is_413(secured):
    client = secured
    ok = {"Authorization": f"Bearer {TOKEN}"}
    big = {"preset": "tiny", "overrides": {"name": "x" * 5000}}
    r = client.post(f"{V1}/runs", json=big, headers=ok)
    assert r.status_code == 413 and "2048" in r.json()["error"]["message"]

    def chunks():  # no Content-Length: chunked transfer
        for _ in range(10):
            yield b" " * 500

    r = client.post(f"{V1}/exchanges/1/override", content=chunks(), headers={**ok, "content-type": "application/json"})
    assert r.status_code == 413
    r = client.post(f"{V1}/runs", content=b"{}", headers={**ok, "content-length": "abc"})
    assert r.status_code == 400


@pytest.mark.parametrize("path", ["/runs", "/runs/1/overrides", "/exchanges/1/override", "/exchanges/1/replay",
                                  "/approvals/1", "/runs/1/fork"])
def test_malformed_json_is_4xx_with_the_error_format(secured, path):
    client = secured
    ok = {"Authorization": f"Bearer {TOKEN}", "content-type": "application/json"}
    for body in (b"{", b"not json", b'{"kind": }', b"\x00\xff"):
        r = client.post(V1 + path, content=body, headers=ok)
        assert r.status_code in (400, 422), (path, body, r.status_code, r.text)
        assert set(r.json()["error"]) == {"message", "fields"}
    r = client.post(V1 + path, content=b"[1]", headers=ok)
    assert r.status_code in (404, 422), r.text


@pytest.mark.parametrize("depth", [40, 900, 100_000])
def test_absurdly_nested_bodies_are_4xx(db_url, tmp_path, depth):
    client, _ = api_seed.open_api(db_url, tmp_path, max_body_bytes=1 << 20)
    with client:
        for path in ("/runs", "/runs/1/fork", "/exchanges/1/override", "/exchanges/1/replay"):
            for body in (b"[" * depth + b"]" * depth,
                         b'{"preset": "tiny", "overrides": ' + b'{"a": ' * depth + b"1" + b"}" * depth + b"}"):
                r = client.post(V1 + path, content=body, headers={"content-type": "application/json"})
                assert 400 <= r.status_code < 500, (path, depth, r.status_code, r.text[:300])


def test_openapi_has_every_route_of_the_design():
    from app.main import create_app
    from app.settings import Settings

    spec = create_app(Settings(database_url="sqlite://")).openapi()
    paths = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    expected = {
        ("POST", "/api/v1/runs"), ("GET", "/api/v1/runs"), ("GET", "/api/v1/runs/{run_id}"),
        ("POST", "/api/v1/runs/{run_id}/pause"), ("POST", "/api/v1/runs/{run_id}/resume"),
        ("POST", "/api/v1/runs/{run_id}/cancel"), ("POST", "/api/v1/runs/{run_id}/fork"),
        ("GET", "/api/v1/runs/{run_id}/gates"), ("GET", "/api/v1/runs/{run_id}/evals"),
        ("GET", "/api/v1/runs/{run_id}/metrics"), ("GET", "/api/v1/runs/{run_id}/exchanges"),
        ("GET", "/api/v1/exchanges/{exchange_id}"), ("POST", "/api/v1/exchanges/{exchange_id}/override"),
        ("POST", "/api/v1/runs/{run_id}/overrides"), ("POST", "/api/v1/exchanges/{exchange_id}/replay"),
        ("GET", "/api/v1/replays/{replay_id}"), ("GET", "/api/v1/runs/{run_id}/events"),
        ("GET", "/api/v1/runs/{run_id}/export"), ("GET", "/api/v1/presets"), ("GET", "/healthz"),
        ("GET", "/api/v1/runs/{run_id}/approvals"), ("POST", "/api/v1/approvals/{approval_id}"),
        ("GET", "/api/v1/runs/{run_id}/flows"),
    }
    assert expected <= paths, expected - paths
    assert "HTTPBearer" in spec["components"]["securitySchemes"]
    assert spec["paths"]["/api/v1/exchanges/{exchange_id}/replay"]["post"]["responses"].keys() >= {"202"}


def test_importing_the_app_loads_no_model_code():
    code = ("import sys, app.main, app.api, app.services.runs; "
            "bad = [m for m in ('torch', 'transformers', 'vllm', 'ray', 'opcod_core.trainer', 'opcod_core.student') "
            "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[2])
    assert res.returncode == 0, res.stdout + res.stderr


def test_pages_and_sse_need_the_session_cookie_when_a_token_is_set(secured):
    client = secured
    r = client.get("/runs/new", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login?next=/runs/new")
    assert client.get("/static/app.css").status_code == 200
    page = client.get("/login?next=/runs/new")
    assert page.status_code == 200 and 'name="token"' in page.text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    forged = client.post("/login", data={"token": TOKEN, "next": "/"}, follow_redirects=False)
    assert forged.status_code == 403  # login CSRF refused
    bad = client.post("/login", data={"token": "nope", "next": "/runs/new", "csrf_token": csrf},
                      follow_redirects=False)
    assert bad.status_code == 401
    # an open redirect is refused: next must be a same-site path
    r = client.post("/login", data={"token": TOKEN, "next": "//evil.example/", "csrf_token": csrf},
                    follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/"
    assert TOKEN not in r.headers["set-cookie"] and "httponly" in r.headers["set-cookie"].lower()
    assert client.get("/runs/new").status_code == 200
    assert client.get(f"{V1}/runs").status_code == 200  # the cookie also serves the dashboard's API calls
    client.cookies.clear()
    assert client.get(f"{V1}/runs").status_code == 401
