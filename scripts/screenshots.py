#!/usr/bin/env python
"""Capture a screenshot of every dashboard page from real runs into ``docs/screenshots/``.

Starts ``opcod serve --workers 1`` (a subprocess on a free port, with a temporary data dir), then drives
Debian's Chromium with Playwright as a user would: launches a ``tiny`` run from the form and lets it
finish, runs a replay on one of its exchanges, then launches a second tiny run in manual approval mode
(gating ``always``) and waits for its first pending approval. Pages (1366x900 viewport, full page, PNG):

    runs.png        the runs list            launch.png     the launch form
    run-page.png    the finished run         exchanges.png  its exchanges table
    exchange.png    one exchange: heatmaps and a finished replay
    approvals.png   the manual-approval queue
    compare.png     the two runs compared

The tiny students' warm-up is trained once into the cache (``--cache``, default ``.cache/opcod-cache``)
and reused by the server's worker. Usage::

    python scripts/screenshots.py [--out docs/screenshots] [--cache DIR]
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("OPCOD_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
VIEWPORT = {"width": 1366, "height": 900}
LONG_MS = 600_000  # a tiny run to its end, a replay, the first approval


def log(msg: str) -> None:
    print(f"[screenshots] {msg}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def warm_cache(cache: Path) -> None:
    from opcod_core.executors import build_students
    from opcod_core.config import preset
    from opcod_core.data import load_dataset
    from opcod_core.trainer import data_spec

    cfg = preset("tiny")
    build_students(cfg, load_dataset(data_spec(cfg)), cache)


def start_server(data: Path, cache: Path) -> tuple[subprocess.Popen, str, Path]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPCOD_")}
    env.update({"OPCOD_DATA_DIR": str(data), "OPCOD_CACHE_DIR": str(cache), "PYTHONUNBUFFERED": "1"})
    log_path = data / "serve.log"
    with open(log_path, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "opcod_core.cli", "serve", "--port", str(port), "--workers", "1"],
                                stdout=out, stderr=subprocess.STDOUT, env=env, cwd=str(data))
    base = f"http://127.0.0.1:{port}"
    import httpx

    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"opcod serve exited with {proc.returncode}:\n{log_path.read_text()[-4000:]}")
        try:
            if httpx.get(base + "/healthz", timeout=2).status_code == 200:
                return proc, base, log_path
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"opcod serve not healthy within 60 s:\n{log_path.read_text()[-4000:]}")
        time.sleep(0.1)


def launch(page, base: str, name: str, fields: dict[str, str]) -> int:
    from playwright.sync_api import expect

    page.goto(base + "/runs/new")
    expect(page.get_by_label("Preset")).to_have_value("tiny")
    page.get_by_label("Run name").fill(name)
    for label, value in fields.items():
        control = page.get_by_label(label, exact=True)
        if control.evaluate("e => e.tagName") == "SELECT":
            control.select_option(value)
        else:
            control.fill(value)
    page.get_by_role("button", name="Launch run").click()
    page.wait_for_url(re.compile(r"/runs/\d+$"))
    return int(page.url.rsplit("/", 1)[1])


def shoot(page, out: Path, name: str) -> None:
    path = out / name
    page.screenshot(path=str(path), full_page=True)
    log(f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path} ({path.stat().st_size // 1024} KB)")


def wait_charts(page) -> None:
    page.wait_for_function("() => Number(document.body.getAttribute('data-charts-steps') || 0) > 0", timeout=30_000)
    page.wait_for_function("() => document.querySelectorAll('.chart canvas').length > 0", timeout=30_000)


def capture(base: str, out: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        ctx = browser.new_context(viewport=VIEWPORT)
        page = ctx.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("dialog", lambda d: d.accept())

        # the launch form, as it first opens
        page.goto(base + "/runs/new")
        expect(page.get_by_label("Preset")).to_have_value("tiny")
        page.get_by_label("Run name").fill("tiny chemistry ⇄ physics")
        shoot(page, out, "launch.png")

        # a tiny run, launched from the form, to its end
        tiny = launch(page, base, "tiny chemistry ⇄ physics", {"Rounds R": "2", "Steps per direction K": "3"})
        log(f"run {tiny} launched; waiting for it to finish")
        expect(page.locator("#run-status .badge").first).to_have_text("finished", timeout=LONG_MS)
        page.reload()
        wait_charts(page)
        shoot(page, out, "run-page.png")

        page.goto(f"{base}/runs/{tiny}/exchanges")
        expect(page.locator("#rows tr").first).to_be_visible()
        shoot(page, out, "exchanges.png")

        # one exchange with kept feedback (both heatmaps), and a finished replay on it
        page.get_by_label("Feedback category").select_option("kept")
        page.wait_for_url(re.compile(r"category=kept"))
        page.locator("#rows tr a").first.click()
        page.wait_for_url(re.compile(r"/exchanges/\d+$"))
        page.get_by_label("Feedback to replay with").fill("Think about which quantity is conserved.")
        page.get_by_role("button", name="Run replay").click()
        expect(page.locator("#replays .replay").first.locator(".badge")).to_have_text("done", timeout=LONG_MS)
        page.locator("#heat-div .tok").first.hover()
        shoot(page, out, "exchange.png")

        # a second run in manual approval mode, to its first pending approval
        manual = launch(page, base, "tiny, manual approval",
                        {"Rounds R": "1", "Steps per direction K": "2", "Gating mode": "always",
                         "Feedback approval": "manual"})
        log(f"run {manual} launched; waiting for its first pending approval")
        page.goto(f"{base}/runs/{manual}/approvals")
        expect(page.locator("article.approval").first).to_be_visible(timeout=LONG_MS)
        shoot(page, out, "approvals.png")

        page.goto(f"{base}/compare?runs={tiny},{manual}")
        expect(page.locator(".pareto svg").first).to_be_visible()
        expect(page.locator('.chart[data-chart="loss"] canvas')).to_have_count(1, timeout=30_000)
        shoot(page, out, "compare.png")

        page.goto(base + "/")
        expect(page.locator("#runs-table")).to_contain_text("manual approval")
        shoot(page, out, "runs.png")

        # cancel the waiting run so the worker stops at once
        page.goto(f"{base}/runs/{manual}")
        page.get_by_role("button", name="Cancel").click()
        expect(page.locator("#run-status")).to_contain_text("cancel")
        ctx.close()
        browser.close()
        if errors:
            raise SystemExit(f"JavaScript errors in the pages: {errors}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshots")
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get("OPCOD_CACHE_DIR") or ROOT / ".cache" / "opcod-cache"))
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    args.cache.mkdir(parents=True, exist_ok=True)
    log(f"warming the tiny students into {args.cache} (a no-op when cached)")
    warm_cache(args.cache.resolve())
    with tempfile.TemporaryDirectory(prefix="opcod-screenshots-") as tmp:
        data = Path(tmp) / "data"
        data.mkdir()
        proc, base, log_path = start_server(data, args.cache.resolve())
        log(f"opcod serve at {base}")
        try:
            capture(base, args.out)
        except BaseException:
            print(log_path.read_text(errors="replace")[-4000:], file=sys.stderr)
            raise
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=120)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
