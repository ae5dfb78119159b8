"""Control from other sites: the Host check, loopback-only without a token, cross-site writes refused,
JSON-only API bodies, CSRF tokens on the dashboard's forms (app.request_policy, app.web.csrf). Each case
is one an attacker's page or a misconfigured deployment could send; each would have been served before."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

import api_seed
from app.models import Run
from app.request_policy import is_loopback

V1 = "/api/v1"
EVIL = "http://evil.example"


def _app(db_url, tmp_path, **settings):
    from app.main import create_app
    from app.settings import Settings

    return create_app(Settings(data_dir=tmp_path / "data", database_url=db_url, **settings), sse_poll_s=0.01)


def _runs(app) -> int:
    with app.state.db() as s:
        return s.query(Run).count()


@pytest.fixture
def local(db_url, tmp_path):
    app = _app(db_url, tmp_path)
    with api_seed.local_client(app) as client:
        client.app_ = app
        yield client


def _csrf(client) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get("/runs/new").text).group(1)


def test_host_header_must_name_the_server(db_url, tmp_path):
    app = _app(db_url, tmp_path, allowed_hosts=["studio.lab.example"])
    with api_seed.local_client(app) as client:
        for host in ("127.0.0.1:8000", "localhost", "[::1]:8000", "studio.lab.example"):
            assert client.get(f"{V1}/runs", headers={"Host": host}).status_code == 200, host
        for host in ("evil.example", "evil.example:8000", "127.0.0.1.evil.example", ""):
            r = client.get(f"{V1}/runs", headers={"Host": host})
            assert r.status_code == 400, host  # DNS rebinding: the name the page used is not ours


def test_without_a_token_only_loopback_clients_without_proxies(db_url, tmp_path):
    app = _app(db_url, tmp_path)
    for address in ("10.0.0.5", "192.168.1.20", "2001:db8::1", "testclient"):
        with TestClient(app, base_url="http://127.0.0.1", client=(address, 4000)) as remote:
            r = remote.get(f"{V1}/runs")
            assert r.status_code == 403 and "OPCOD_API_TOKEN" in r.json()["error"]["message"], address
            assert remote.post(f"{V1}/runs", json={"preset": "tiny"}).status_code == 403
    with api_seed.local_client(app) as client:
        for header in ("X-Forwarded-For", "Forwarded", "X-Real-IP", "X-Forwarded-Host"):
            r = client.get("/", headers={header: "203.0.113.7"})
            assert r.status_code == 403 and header.lower() in r.json()["error"]["message"], header
        assert client.get(f"{V1}/runs").status_code == 200
    assert _runs(app) == 0


def test_with_a_token_remote_clients_need_it(db_url, tmp_path):
    app = _app(db_url, tmp_path, api_token="a-long-enough-token")
    with TestClient(app, base_url="http://127.0.0.1", client=("10.0.0.5", 4000)) as remote:
        assert remote.get(f"{V1}/runs").status_code == 401
        ok = remote.get(f"{V1}/runs", headers={"Authorization": "Bearer a-long-enough-token",
                                              "X-Forwarded-For": "10.0.0.9"})
        assert ok.status_code == 200


def test_loopback_addresses():
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.3.4.5", "::1", "::ffff:127.0.0.1", None))
    assert not any(is_loopback(h) for h in ("10.0.0.1", "0.0.0.0", "::", "localhost.evil", "testclient"))


def test_cross_site_api_writes_are_refused(local):
    client = local
    # the reported attack: a text/plain no-cors fetch from another site
    r = client.post(f"{V1}/runs", content=b'{"preset": "tiny"}',
                    headers={"Content-Type": "text/plain", "Origin": EVIL, "Sec-Fetch-Site": "cross-site"})
    assert r.status_code == 403
    for headers in ({"Origin": EVIL}, {"Origin": "null"}, {"Origin": "http://127.0.0.1:9999"},
                    {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"},
                    {"Origin": "http://127.0.0.1", "Sec-Fetch-Site": "cross-site"}):
        r = client.post(f"{V1}/runs", json={"preset": "tiny"}, headers=headers)
        assert r.status_code == 403 and "cross-site" in r.json()["error"]["message"], headers
        assert client.post(f"{V1}/runs/1/cancel", headers=headers).status_code == 403, headers
    # without Origin the body must still be JSON (a browser cannot send that cross-site without CORS)
    r = client.post(f"{V1}/runs", content=b'{"preset": "tiny"}', headers={"Content-Type": "text/plain"})
    assert r.status_code == 415
    r = client.post(f"{V1}/runs", data={"preset": "tiny"})
    assert r.status_code == 415
    assert _runs(client.app_) == 0
    # the dashboard itself (same origin) and scripts (no Origin) are served
    same = client.post(f"{V1}/runs", json={"preset": "tiny"},
                       headers={"Origin": "http://127.0.0.1", "Sec-Fetch-Site": "same-origin"})
    assert same.status_code == 201
    assert client.post(f"{V1}/runs", json={"preset": "tiny"}).status_code == 201
    assert client.post(f"{V1}/runs", content=b'{"preset": "tiny"}',
                       headers={"Content-Type": "application/vnd.api+json; charset=utf-8"}).status_code == 201
    assert _runs(client.app_) == 3
    # reads are not writes: a cross-site GET is answered (its page cannot read it without CORS)
    assert client.get(f"{V1}/runs", headers={"Origin": EVIL}).status_code == 200


def test_dashboard_forms_need_the_session_csrf_token(local):
    client = local
    form = {"preset": "tiny"}
    # a cross-site form post (no cookie, no token) and a post with a wrong token
    assert client.post("/runs/new", data=form, headers={"Origin": EVIL}, follow_redirects=False).status_code == 403
    r = client.post("/runs/new", data=form, follow_redirects=False)
    assert r.status_code == 403 and "reload the page" in r.text and "<html" in r.text.lower()
    token = _csrf(client)
    assert client.post("/runs/new", data={**form, "csrf_token": token + "x"},
                       follow_redirects=False).status_code == 403
    assert client.post("/runs/new", data=form, headers={"X-CSRF-Token": "nope"},
                       follow_redirects=False).status_code == 403
    assert _runs(client.app_) == 0
    # the token from the page (field as a plain form posts it; header as htmx sends it)
    r = client.post("/runs/new", data={**form, "csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/runs/")
    r = client.post("/runs/new", data=form, headers={"X-CSRF-Token": token, "HX-Request": "true"},
                    follow_redirects=False)
    assert r.status_code == 204 and r.headers["HX-Redirect"].startswith("/runs/")
    run_id = int(r.headers["HX-Redirect"].rsplit("/", 1)[1])
    assert _runs(client.app_) == 2
    # every control form carries the token, and refuses a post without it
    page = client.get(f"/runs/{run_id}").text
    assert page.count('name="csrf_token"') >= 3
    assert client.post(f"/runs/{run_id}/cancel", follow_redirects=False).status_code == 403
    with client.app_.state.db() as s:
        assert s.get(Run, run_id).status == "queued"
    # another browser (no session cookie) cannot replay the token
    other = api_seed.local_client(client.app_)
    assert other.post(f"/runs/{run_id}/cancel", data={"csrf_token": token}, follow_redirects=False).status_code == 403


def test_session_cookie_is_signed_strict_and_shared_by_processes(db_url, tmp_path):
    app = _app(db_url, tmp_path, secure_cookies=True, session_max_age_s=600)
    with api_seed.local_client(app) as client:
        page = client.get("/runs/new")
        cookie = page.headers["set-cookie"].lower()
        assert "opcod_ui=" in cookie and "samesite=strict" in cookie and "httponly" in cookie
        assert "secure" in cookie and "max-age=600" in cookie
        token = _csrf(client)
    key = (tmp_path / "data" / "secret_key")
    assert key.stat().st_mode & 0o077 == 0  # the signing key is private to its owner
    # a second server process on the same data directory accepts the first one's session
    twin = _app(db_url, tmp_path)
    with api_seed.local_client(twin, cookies=dict(client.cookies)) as again:
        r = again.post("/runs/new", data={"preset": "tiny", "csrf_token": token},
                       follow_redirects=False)
        assert r.status_code == 303
    # a server with another key does not
    stranger = _app(db_url, tmp_path, secret_key="another-key-entirely")
    with api_seed.local_client(stranger, cookies=dict(client.cookies)) as again:
        r = again.post("/runs/new", data={"preset": "tiny", "csrf_token": token},
                       follow_redirects=False)
        assert r.status_code == 403
