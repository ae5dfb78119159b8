"""Signed dashboard sessions when the server has a token: sign-in, reads only on the API, expiry, sign-out,
a new token ends every session, rate-limited failures, no short tokens for remote clients."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

import api_seed

TOKEN = "a-sufficiently-long-token"  # noqa: S105 - a test token
V1 = "/api/v1"


def _app(db_url, tmp_path, **settings):
    from app.main import create_app
    from app.settings import Settings

    return create_app(Settings(data_dir=tmp_path / "data", database_url=db_url,
                               **{"api_token": TOKEN, **settings}), sse_poll_s=0.01)


def _sign_in(client, token=TOKEN):
    page = client.get("/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    return client.post("/login", data={"token": token, "csrf_token": csrf}, follow_redirects=False), csrf


def test_session_reads_the_api_but_never_writes_it_and_signs_out(db_url, tmp_path):
    with api_seed.local_client(_app(db_url, tmp_path)) as client:
        r, _ = _sign_in(client)
        assert r.status_code == 303 and "opcod_ui=" in r.headers["set-cookie"]
        assert client.get("/").status_code == 200 and "Sign out" in client.get("/").text
        assert client.get(f"{V1}/runs").status_code == 200                  # the dashboard's reads
        assert client.post(f"{V1}/runs", json={"preset": "tiny"}).status_code == 401   # writes need the token
        assert client.post(f"{V1}/runs", json={"preset": "tiny"},
                           headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 201
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/").text).group(1)
        assert client.post("/logout", data={"csrf_token": csrf}, follow_redirects=False).headers["location"] == "/login"
        assert client.get("/", follow_redirects=False).status_code == 303
        assert client.get(f"{V1}/runs").status_code == 401


def _session_cookie(settings, data: dict) -> str:
    """A session cookie as Starlette's SessionMiddleware signs it, with the server's key."""
    import base64
    import json

    import itsdangerous

    payload = base64.b64encode(json.dumps(data).encode())
    return itsdangerous.TimestampSigner(settings.session_secret()).sign(payload).decode()


def test_sessions_expire_and_a_new_token_ends_them(db_url, tmp_path):
    import time

    from app.guard import token_fingerprint

    app = _app(db_url, tmp_path, session_max_age_s=3600)
    settings = app.state.settings
    fresh = _session_cookie(settings, {"auth": token_fingerprint(TOKEN), "auth_at": time.time()})
    old = _session_cookie(settings, {"auth": token_fingerprint(TOKEN), "auth_at": time.time() - 3601})
    other = _session_cookie(settings, {"auth": token_fingerprint("the-previous-token-value"), "auth_at": time.time()})
    for cookie, status in ((fresh, 200), (old, 401), (other, 401)):
        with api_seed.local_client(app, cookies={"opcod_ui": cookie}) as client:
            assert client.get(f"{V1}/runs").status_code == status
    forged = fresh[:-4] + ("AAAA" if not fresh.endswith("AAAA") else "BBBB")  # a bad signature
    with api_seed.local_client(app, cookies={"opcod_ui": forged}) as client:
        assert client.get(f"{V1}/runs").status_code == 401


def test_failed_authentications_are_rate_limited(db_url, tmp_path):
    app = _app(db_url, tmp_path)
    with api_seed.local_client(app) as client:
        for _ in range(10):
            assert client.get(f"{V1}/runs", headers={"Authorization": "Bearer wrong"}).status_code == 401
        r = client.get(f"{V1}/runs", headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0   # even the right token must wait
        r, _ = _sign_in(client)
        assert r.status_code == 429 and "Too many failed sign-ins" in r.text
    with TestClient(app, base_url="http://127.0.0.1", client=("127.0.0.2", 1)) as other:  # another address
        assert other.get(f"{V1}/runs", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200


def test_short_tokens_serve_loopback_only(db_url, tmp_path):
    app = _app(db_url, tmp_path, api_token="short-token")
    with TestClient(app, base_url="http://127.0.0.1", client=("10.0.0.5", 1)) as remote:
        r = remote.get(f"{V1}/runs", headers={"Authorization": "Bearer short-token"})
        assert r.status_code == 403 and "shorter than 16" in r.json()["error"]["message"]
    with api_seed.local_client(app) as local:
        assert local.get(f"{V1}/runs", headers={"Authorization": "Bearer short-token"}).status_code == 200


@pytest.mark.parametrize("token", [None, "short"])
def test_serve_refuses_remote_binds_without_a_long_token(tmp_path, token):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.startswith("OPCOD_")}
    env["OPCOD_DATA_DIR"] = str(tmp_path)
    if token:
        env["OPCOD_API_TOKEN"] = token
    res = subprocess.run([sys.executable, "-m", "opcod_core.cli", "serve", "--host", "0.0.0.0", "--no-worker"],
                         capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path)
    assert res.returncode == 2 and "OPCOD_API_TOKEN" in res.stderr
