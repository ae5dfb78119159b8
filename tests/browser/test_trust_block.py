"""The run page's tutor-trust block in a real browser: one chart per tutor with its quarantine periods shaded
where the trust service (``app.services.trust``) puts them, the reasons and a tutor name carrying markup shown
as text (never run), the block hidden on a two-student run without trust data, and its live refresh when
the worker records a quarantine. Runs are recorded through the worker's recorder (``seed.seed_events``) with
the trust tests' events (``tests/app/trust_events.py``)."""

from __future__ import annotations

import tempfile

import pytest
from playwright.sync_api import expect

import seed
from app.models import Run
from app.services import trust
from app.worker.recorder import Recorder
from opcod_core import events as ev
from trust_events import AUTO_REASON, DOMAINS, HUMAN_REASON, trust_events  # tests/app is on pytest's pythonpath

NAME = "<script>window.__xss=3</script>"   # a tutor name with markup: the rows carry what they carry
STUDENTS = ("chem", NAME, "bio")

READ_PANELS = """() => [...document.querySelectorAll('#trust figure.trust-panel')].map(f => ({
  tutor: f.dataset.tutor, name: f.querySelector('.trust-tutor').textContent,
  rate: f.querySelector('.trust-rate').textContent.replace(/\\s+/g, ' ').trim(),
  periods: [...f.querySelectorAll('rect.quarantine-period')].map(r => ({
    from: r.dataset.from, to: r.dataset.to, width: r.getBBox().width, title: r.querySelector('title').textContent})),
  reasons: [...f.querySelectorAll('.trust-reason')].map(s => s.textContent),
  band: !!f.querySelector('path.trust-band'), domains: [...f.querySelectorAll('path.trust-domain')].map(p => p.dataset.domain)}))"""


@pytest.fixture(scope="module")
def trust_run(live_server):
    return seed.seed_events(live_server.sessions, trust_events(STUDENTS), name="trust block", students=STUDENTS,
                            domains=DOMAINS).run_id


def test_periods_are_shaded_and_reasons_and_names_are_text(page, live_server, trust_run):
    page.goto(f"{live_server.url}/runs/{trust_run}")
    expect(page.locator("#trust")).to_be_visible()
    model = trust.trust(live_server.sessions, trust_run).model_dump()
    panels = page.evaluate(READ_PANELS)
    assert [p["tutor"] for p in panels] == [p["name"] for p in panels] == list(STUDENTS)
    by = {p["tutor"]: p for p in panels}
    for t in model["tutors"]:
        shown = by[t["tutor"]]
        assert [(p["from"], p["to"]) for p in shown["periods"]] == [
            (str(p["from_step"]), "" if p["to_step"] is None else str(p["to_step"])) for p in t["periods"]]
        assert all(p["width"] > 0 for p in shown["periods"])
        assert shown["reasons"] == [p["reason"] for p in t["periods"]]
        assert shown["band"] == bool(t["points"]) and shown["domains"] == [d["domain"] for d in t["domains"]]
        if t["opportunities"]:
            lo, hi = t["lower"], t["upper"]
            assert shown["rate"].startswith(f"{t['breaks']} break")
            assert f" in {t['opportunities']} opportunit" in shown["rate"] and f"[{lo:.2f}, {hi:.2f}]" in shown["rate"]
        else:
            assert shown["rate"].startswith("no opportunity yet")
    assert [(p["from"], p["to"]) for p in by["bio"]["periods"]] == [("2", "5")]
    assert by["bio"]["reasons"] == [AUTO_REASON] and AUTO_REASON in by["bio"]["periods"][0]["title"]
    assert by[NAME]["reasons"] == [f"human: {HUMAN_REASON}"] and by["chem"]["periods"] == []
    assert page.locator("#trust script").count() == 0 and page.locator("#trust b").count() == 0
    assert page.evaluate("window.__xss") is None
    assert page.js_errors == []


def test_a_two_student_run_without_trust_data_hides_the_block(page, live_server):
    page.goto(f"{live_server.url}/runs/{live_server.ids['plain']['run']}")
    expect(page.locator("#flows")).to_be_visible()
    expect(page.locator("#trust")).to_be_hidden()
    assert page.js_errors == []


def test_the_block_refreshes_when_the_worker_records_a_quarantine(page, live_server, tmp_path):
    events = trust_events(STUDENTS)
    cut = next(i for i, e in enumerate(events) if isinstance(e, ev.TrustEvent))   # before bio's quarantine
    seeded = seed.seed_events(live_server.sessions, events[:cut], name="trust live", students=STUDENTS,
                              domains=DOMAINS, status="running")
    rid = seeded.run_id
    page.goto(f"{live_server.url}/runs/{rid}")
    bio = page.locator('#trust figure[data-tutor="bio"]')
    expect(bio).to_be_visible()
    expect(bio.locator("rect.quarantine-period")).to_have_count(0)
    page.evaluate("window.__marker = 1")
    with live_server.sessions() as s:
        worker_id = s.get(Run, rid).worker_id
    recorder = Recorder(live_server.sessions, rid, worker_id, out_dir=tempfile.mkdtemp(dir=tmp_path))
    step2 = next(i for i, e in enumerate(events) if isinstance(e, ev.StepEvent) and e.global_step == 2)
    recorder.buffer.extend(events[cut:step2 + 1])   # the quarantine and step 2, in one transaction
    recorder.flush()
    rect = bio.locator("rect.quarantine-period")
    expect(rect).to_have_count(1, timeout=10_000)
    expect(rect).to_have_attribute("data-from", "2")
    expect(rect).to_have_attribute("data-to", "")            # still in force
    expect(bio.locator(".badge.quarantined")).to_be_visible()
    assert page.evaluate("window.__marker") == 1   # refreshed in place, not reloaded
    assert page.evaluate("window.__xss") is None and page.js_errors == []
