"""The dashboard end to end, as a new user would use it (issue 4, "Done when"): a real ``opcod serve``
subprocess with one training worker (``e2e_server``), driven through Chromium only. Every wait is a
DOM condition with a deadline (Playwright ``expect`` / ``wait_for_function``), never a fixed sleep.

The two tests share the server; its single worker runs one run at a time, so the tiny run of the first
test has finished (and its replay is done) before the manual-approval run of the second one starts.
"""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

# Deadlines (ms). Generous: the whole test suite may share the CPU with this server's worker.
START_MS = 300_000  # queued -> the first step / the first exchange / the first approval
FINISH_MS = 600_000  # a tiny run to its end
REPLAY_MS = 300_000


def _launch(page, base: str, name: str, **fields: str) -> int:
    """Fill the launch form (tiny preset) and submit; returns the new run's id (the run page)."""
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
    expect(page.locator("h1")).to_contain_text(name)
    return int(page.url.rsplit("/", 1)[1])


def _progress(page) -> float:
    return float(page.locator("#run-status progress").get_attribute("value") or 0)


def _wait_progress_above(page, value: float, timeout_ms: int) -> None:
    page.wait_for_function(
        "v => { const p = document.querySelector('#run-status progress'); return p && Number(p.value) > v; }",
        arg=value, timeout=timeout_ms)


def _charts_steps(page) -> int:
    return int(page.locator("body").get_attribute("data-charts-steps") or 0)


def _steps_count(page) -> int:
    return int(page.locator("#run-status dt", has_text=re.compile("^steps$")).locator("xpath=../dd").inner_text())


def test_tiny_run_launch_watch_inspect_edit_and_replay(page, e2e_server):
    base = e2e_server.base
    page.on("dialog", lambda d: d.accept())
    t0 = time.monotonic()

    # --- launch a tiny run from the form ---------------------------------------------------------------
    rid = _launch(page, base, "e2e tiny", **{"Rounds R": "2", "Steps per direction K": "3"})
    expect(page.locator("#run-status")).to_contain_text(re.compile("queued|running"))
    expect(page.locator("#run-status")).to_contain_text("R=2 × K=3")
    page.evaluate("window.__marker = 'no reload'")  # survives only if the page is never reloaded

    # --- watch the progress bar and the charts move without reloading ---------------------------------
    _wait_progress_above(page, 0, START_MS)
    expect(page.locator("#run-status")).to_contain_text("running")
    p1 = _progress(page)
    _wait_progress_above(page, p1, START_MS)
    assert _progress(page) > p1 > 0
    page.wait_for_function("() => Number(document.body.getAttribute('data-charts-steps') || 0) >= 1",
                           timeout=START_MS)
    expect(page.locator('.chart[data-chart="loss"] canvas')).to_have_count(1)
    steps_drawn = _charts_steps(page)
    page.wait_for_function("n => Number(document.body.getAttribute('data-charts-steps') || 0) > n",
                           arg=steps_drawn, timeout=START_MS)
    expect(page.locator("#run-status")).to_contain_text(re.compile(r"round \d · direction \d · step \d"))
    assert page.evaluate("window.__marker") == "no reload"
    t_live = time.monotonic() - t0

    # --- open the newest exchange from the run page's live feed ----------------------------------------
    expect(page.locator("#feed tbody tr").first).to_be_visible(timeout=START_MS)
    link = page.locator("#feed tbody tr a").first
    ex_id = int(link.inner_text().lstrip("#"))
    link.click()
    page.wait_for_url(re.compile(rf"/exchanges/{ex_id}$"))
    expect(page.locator("h1")).to_have_text(f"Exchange #{ex_id}")
    expect(page.locator("#rollout-text")).not_to_be_empty()

    # --- the per-token heatmap, with the exact value on hover --------------------------------------------
    toks = page.locator("#heat-div .tok")
    expect(toks.first).to_be_visible()
    assert toks.count() > 0
    toks.first.hover()
    expect(page.locator("#heat-div .heat-readout")).to_contain_text("token 0")
    expect(page.locator("#heat-div .heat-readout")).to_contain_text(toks.first.get_attribute("data-v"))

    # --- submit a feedback edit: pending, then applied by the worker (or at least audited) -------------
    text = "Think about which quantity is conserved in the question."
    page.get_by_label("edit", exact=True).check()
    page.get_by_label("Feedback text (for edit)").fill(text)
    page.get_by_role("button", name="Submit override").click()
    audit = page.locator("#override-panel table")
    expect(audit).to_contain_text(text)
    expect(audit).to_contain_text("edit")
    row_status = audit.locator("tbody tr").first.locator(".badge")
    expect(row_status).to_have_text(re.compile("pending|applied"))
    if row_status.inner_text() == "pending":
        expect(page.locator(".pending-override")).to_contain_text(text)

    # the exchange page is not live: reload it until the worker applied the edit or the run ended
    deadline = time.monotonic() + FINISH_MS / 1000
    while True:
        page.reload()
        status = page.locator("#override-panel table tbody tr").first.locator(".badge").inner_text()
        if status != "pending" or "overrides can no longer be applied" in page.locator("#override-panel").inner_text():
            break
        assert time.monotonic() < deadline, "the edit stayed pending and the run did not end"
        page.wait_for_timeout(1000)  # poll interval, bounded by the deadline
    assert status in ("applied", "pending"), status  # pending: the run ended before the tutee's next step
    applied = status == "applied"
    if applied:
        expect(page.locator("#override-panel table tbody tr").first.locator("td").last).to_have_text(re.compile(r"^\d+$"))

    # --- the run goes to its end; the run page shows it without a reload -------------------------------
    page.goto(f"{base}/runs/{rid}")
    page.evaluate("window.__marker = 'no reload'")
    expect(page.locator("#run-status")).to_contain_text("finished", timeout=FINISH_MS)
    expect(page.locator("#run-status progress")).to_have_attribute("value", re.compile(r"^100(\.0*)?$"))
    assert page.evaluate("window.__marker") == "no reload"
    t_finished = time.monotonic() - t0

    # --- the exchanges table: the human-edited exchange made by the edit, or the original by paging ---
    page.goto(f"{base}/runs/{rid}/exchanges")
    expect(page.locator("#rows tr").first).to_be_visible()
    if applied:
        page.get_by_label("Human-edited").select_option("true")
        page.wait_for_url(re.compile(r"human_edited=true"))
        expect(page.locator("#rows tr")).to_have_count(1)
        expect(page.locator("#rows tr").first).to_contain_text("human")
        page.locator("#rows tr a").first.click()
        page.wait_for_url(re.compile(r"/exchanges/\d+$"))
        expect(page.locator(".notice").first).to_contain_text(f"made from exchange #{ex_id}")
        expect(page.locator("#feedback-sanitised")).to_have_text(text)  # the text the self-teacher saw
        page.get_by_role("link", name=f"exchange #{ex_id}").click()
        expect(page.locator(".notice", has_text="Human-edited versions of this exchange")).to_be_visible()
    else:
        target = page.get_by_role("link", name=f"#{ex_id}", exact=True)
        while not target.count():  # keyset paging, bounded by the run's exchanges
            n = page.locator("#table tbody tr").count()
            page.get_by_role("link", name="Older exchanges").click()
            page.wait_for_function("n => document.querySelectorAll('#table tbody tr').length > n", arg=n)
        target.click()
    page.wait_for_url(re.compile(rf"/exchanges/{ex_id}$"))
    expect(page.locator("#override-panel table")).to_contain_text(text)  # the audit list keeps the edit
    expect(page.locator("#override-panel")).to_contain_text("overrides can no longer be applied")

    # --- a replay with other feedback, served by the now idle worker -----------------------------------
    page.get_by_label("Feedback to replay with").fill("Consider the units of each quantity.")
    page.get_by_role("button", name="Run replay").click()
    replay = page.locator("#replays .replay").first
    expect(replay).to_contain_text("Consider the units of each quantity.")
    expect(replay.locator(".badge")).to_have_text("done", timeout=REPLAY_MS)
    expect(replay.locator(".heatmap")).to_have_count(3)  # before, after, effect
    expect(replay.locator(".before-after .heatmap")).to_have_count(2)
    expect(replay).to_contain_text("Mean divergence: before")
    expect(replay.locator("table.dist")).to_contain_text("Teacher's answer distribution")
    assert replay.locator("table.dist tbody tr").count() >= 2
    print(f"\n[e2e tiny] live progress after {t_live:.0f} s, finished after {t_finished:.0f} s, "
          f"replay done after {time.monotonic() - t0:.0f} s; edit {'applied' if applied else 'audited'}")
    assert page.js_errors == []


def test_manual_approval_run_waits_for_the_tutor_approval_and_continues(page, browser, e2e_server):
    base = e2e_server.base
    page.on("dialog", lambda d: d.accept())
    t0 = time.monotonic()
    rid = _launch(page, base, "e2e manual approval", **{"Rounds R": "1", "Steps per direction K": "2",
                                                        "Gating mode": "always", "Feedback approval": "manual"})
    expect(page.locator("#run-status")).to_contain_text("approval manual")

    # a second tab keeps the live run page open to see the run continue
    ctx = browser.new_context(viewport={"width": 1366, "height": 900})
    run_page = ctx.new_page()
    try:
        run_page.goto(f"{base}/runs/{rid}")
        page.get_by_role("link", name=re.compile("^Approvals")).click()
        page.wait_for_url(re.compile(rf"/runs/{rid}/approvals$"))
        expect(page.locator("h1")).to_contain_text("Feedback awaiting approval")
        first = page.locator("article.approval").first
        expect(first).to_be_visible(timeout=START_MS)  # the queue refreshes itself
        t_first = time.monotonic() - t0
        steps_before = _steps_count(run_page)
        expect(run_page.locator("#run-status")).to_contain_text("running")

        # approve the first feedback, then the rest of the step's queue, until the run records the step
        first_id = first.get_attribute("id").split("-")[1]
        first.get_by_role("button", name="Approve").click()
        decided = page.locator("#queue table")
        expect(decided).to_contain_text("approved")
        expect(page.locator(f"#approval-{first_id}")).to_have_count(0)
        approved = 1
        deadline = time.monotonic() + START_MS / 1000
        while _steps_count(run_page) <= steps_before and run_page.locator("#run-status .badge").first.inner_text() == "running":
            assert time.monotonic() < deadline, "the run did not continue after the approvals"
            nxt = page.locator("article.approval").first
            if nxt.count():
                nid = nxt.get_attribute("id")
                nxt.get_by_role("button", name="Approve").click()
                expect(page.locator(f"#{nid}")).to_have_count(0)
                approved += 1
            else:
                run_page.wait_for_timeout(500)  # poll interval, bounded by the deadline
        assert _steps_count(run_page) > steps_before
        expect(page.locator("#queue table tbody tr").first.locator(".badge")).to_have_text("approved")
        expect(run_page.locator("#run-status")).to_contain_text(re.compile("running|finished"))
        t_continued = time.monotonic() - t0

        # cancel it from the run page (frees the worker; the approvals wait notices the request)
        run_page.on("dialog", lambda d: d.accept())
        if run_page.get_by_role("button", name="Cancel").count():
            run_page.get_by_role("button", name="Cancel").click()
            expect(run_page.locator("#run-status")).to_contain_text(re.compile("cancel"))
            expect(run_page.locator("#run-status .badge").first).to_have_text(re.compile("cancelled|finished"),
                                                                              timeout=START_MS)
        print(f"\n[e2e manual] first approval after {t_first:.0f} s, run continued after {t_continued:.0f} s "
              f"({approved} approved)")
        assert page.js_errors == []
    finally:
        ctx.close()
