"""Browser tests: Playwright driving Debian's Chromium (DESIGN section 7) against a real uvicorn server.

The server runs ``create_app`` in a background thread on a free loopback port, on a SQLite database
migrated by Alembic and seeded through the worker's real recorder (``tests/app/seed.py``). Chromium
is the system package (``/usr/bin/chromium``); ``playwright install`` is never run (it downloads a
browser). Every test saves a screenshot to ``.cache/browser-artifacts/<test>.png`` (gitignored).

The end-to-end tests (``test_end_to_end.py``, marked ``slow``) instead drive a real ``opcod serve``
subprocess with one training worker (``e2e_server``), on a temp data dir and the session's warm tiny
cache (``warm_tiny_cache``; set ``OPCOD_E2E_CACHE_DIR`` to reuse a warmed cache across sessions).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path(os.environ.get("OPCOD_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
ARTIFACTS = ROOT / ".cache" / "browser-artifacts"


import seed  # noqa: E402  (tests/app/seed.py, on pytest's pythonpath)

sys.path.insert(0, str(ROOT / "scripts"))
from serve_thread import serve_in_thread  # noqa: E402


def _load_api_seed():
    import sys

    if "opcod_api_seed" in sys.modules:
        return sys.modules["opcod_api_seed"]
    spec = importlib.util.spec_from_file_location("opcod_api_seed", ROOT / "tests" / "app" / "api_seed.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["opcod_api_seed"] = mod  # its dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


class LiveServer:
    def __init__(self, url: str, db_url: str, ids: dict, sessions) -> None:
        self.url = url
        self.db_url = db_url
        self.ids = ids
        self.sessions = sessions  # a session factory on the same database (to play the worker)


@pytest.fixture(scope="session")
def live_server(tmp_path_factory):
    from app.db import make_engine, session_factory, upgrade
    from app.main import create_app
    from app.settings import Settings

    data = tmp_path_factory.mktemp("opcod-browser")
    db_url = f"sqlite:///{data / 'opcod.db'}"
    upgrade(db_url)
    engine = make_engine(db_url)
    sf = session_factory(engine)
    ids = {}
    ids["plain"] = seed.dashboard_run(sf, name="plain run", status="running")
    ids["xss"] = seed.dashboard_run(sf, name="xss run", status="running", xss=True)
    ids["manual"] = seed.dashboard_run(sf, name="manual run", status="running", approval="manual")
    ids["live"] = seed.dashboard_run(sf, name="live run", status="running", steps=2, per_step=2)
    app = create_app(Settings(database_url=db_url, data_dir=data), sse_poll_s=0.2)
    from app import web

    web.install(app)  # a no-op when create_app already mounted the dashboard
    with serve_in_thread(app, deadline_s=20) as url:
        yield LiveServer(url, db_url, ids, sf)
    engine.dispose()


@pytest.fixture(scope="session")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright (no browser download)")
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found: apt-get install -y chromium (or set OPCOD_CHROMIUM)")
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield b
        b.close()


@pytest.fixture
def page(browser, request):
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.js_errors = errors
    yield pg
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        pg.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    finally:
        context.close()


# --- a real `opcod serve` with one worker (the end-to-end tests) ------------------------------------------

@pytest.fixture(scope="session")
def warm_tiny_cache(tiny_cache):
    """The tiny students' warm-up, trained once in-process into the session's cache (a no-op when another
    test already did it), so the server's worker loads warmed weights instead of training them."""
    from opcod_core.executors import build_students
    from opcod_core.config import preset
    from opcod_core.data import load_dataset
    from opcod_core.trainer import data_spec

    cache = Path(os.environ.get("OPCOD_E2E_CACHE_DIR") or tiny_cache)
    cfg = preset("tiny")
    build_students(cfg, load_dataset(data_spec(cfg)), cache)
    return cache


@pytest.fixture(scope="module")
def e2e_server(tmp_path_factory, warm_tiny_cache):
    """``opcod serve --workers 1`` on a free port and a temp data dir; its log is kept in the artifacts."""
    api_seed = _load_api_seed()
    served = api_seed.Served(tmp_path_factory.mktemp("opcod-e2e") / "data", args=["--workers", "1"],
                             env={"OPCOD_CACHE_DIR": str(warm_tiny_cache)})
    try:
        served.wait_healthy()
        yield served
    finally:
        rc = served.stop()
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "e2e-serve.log").write_text(served.log_path.read_text(errors="replace"))
    assert rc == 0, served.log_path.read_text(errors="replace")[-6000:]
