"""Settings defaults/env and the unit-of-work helper."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.db import make_engine, normalize_url, session_factory, session_scope, upgrade
from app.models import Run
from app.settings import Settings, get_settings


def test_settings_defaults(monkeypatch, tmp_path):
    for k in ("OPCOD_DATABASE_URL", "OPCOD_DATA_DIR", "OPCOD_API_TOKEN", "OPCOD_HOST", "OPCOD_PORT"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.chdir(tmp_path)
    s = Settings()
    assert s.database_url == f"sqlite:///{(tmp_path / '.opcod' / 'opcod.db').resolve()}"
    assert (s.host, s.port, s.api_token, s.heartbeat_s, s.stale_after_s) == ("127.0.0.1", 8000, None, 5, 30)
    assert s.max_body_bytes == 1024 * 1024


def test_settings_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("OPCOD_DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("OPCOD_PORT", "9001")
    monkeypatch.setenv("OPCOD_API_TOKEN", "t0k")
    s = Settings()
    assert s.database_url == f"sqlite:///{tmp_path / 'd' / 'opcod.db'}" and s.port == 9001 and s.api_token == "t0k"
    monkeypatch.setenv("OPCOD_DATABASE_URL", "postgresql://u@h/db")
    assert Settings().database_url == "postgresql://u@h/db"
    get_settings.cache_clear()
    assert get_settings() is get_settings()
    get_settings.cache_clear()


def test_settings_reject_a_stale_limit_below_the_heartbeat(monkeypatch):
    monkeypatch.setenv("OPCOD_HEARTBEAT_S", "30")
    monkeypatch.setenv("OPCOD_STALE_AFTER_S", "10")
    with pytest.raises(ValueError):
        Settings()


def test_postgres_urls_use_psycopg3():
    assert normalize_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("sqlite:///x.db").drivername == "sqlite"


def test_session_scope_commits_and_rolls_back(tmp_path):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    upgrade(url)
    eng = make_engine(url)
    factory = session_factory(eng)
    with session_scope(factory) as s:
        s.add(Run(name="kept", config={}))
    with pytest.raises(RuntimeError):
        with session_scope(factory) as s:
            s.add(Run(name="dropped", config={}))
            s.flush()
            raise RuntimeError("boom")
    with session_scope(factory) as s:
        assert list(s.scalars(select(Run.name))) == ["kept"]
    eng.dispose()
