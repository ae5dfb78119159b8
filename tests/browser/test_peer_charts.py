"""The charts of N students in a real browser: a three-student run page shows three Pareto small multiples
side by side and three Δ series with a legend, both blocks refresh when the worker records the next round,
and the compare page of the trio next to a pair shows each shared student's accuracy change per domain,
absent cells as such. Runs are recorded through the worker's recorder (``seed.seed_events``) with the
app tests' events (``tests/app/test_peer_charts.py``); expected values are read back from the stored rows."""

from __future__ import annotations

import tempfile

import pytest
from playwright.sync_api import expect

from app.models import Run
from test_peer_charts import (DOMAINS3, TRIO, peer_events, seed_peers, stored_gates_in_force,  # tests/app
                              stored_scores)

READ_SERIES = """() => [...document.querySelectorAll('#gates .delta-series')].map(g => ({
  student: g.dataset.student, points: g.querySelectorAll('circle.delta-point').length,
  line: !!g.querySelector('polyline.delta-line'), color: g.querySelector('circle').getAttribute('stroke')}))"""

READ_MULTIPLES = """() => [...document.querySelectorAll('#pareto .pareto-multiple')].map(m => {
  const r = m.querySelector('svg').getBoundingClientRect();
  return {student: m.dataset.student, top: Math.round(r.top), width: Math.round(r.width),
          points: m.querySelectorAll('circle').length, caption: m.querySelector('figcaption').textContent}})"""


@pytest.fixture(scope="module")
def runs(live_server):
    db = live_server.sessions
    trio = seed_peers(db, rounds=3, name="trio charts")
    pair = seed_peers(db, students=("chem", "phys"), domains=DOMAINS3[:2], name="pair charts", salt=3)
    return {"trio": trio, "pair": pair}


def test_a_trio_run_shows_three_small_multiples_and_three_delta_series(page, live_server, runs):
    rid = runs["trio"]
    page.goto(f"{live_server.url}/runs/{rid}")
    multiples = page.locator("#pareto .pareto-multiple")
    expect(multiples).to_have_count(3)
    shown = page.evaluate(READ_MULTIPLES)
    assert [m["student"] for m in shown] == list(TRIO)
    assert len({m["top"] for m in shown}) == 1 and len({m["width"] for m in shown}) == 1   # side by side, one size
    stored = stored_scores(live_server.sessions, rid)
    for m in shown:   # one marker per complete evaluation round
        assert m["points"] == len(stored[m["student"]]) == 4
    expect(page.locator("#pareto .pareto-multiple").first.locator(".pareto-domains li")).to_have_count(3)
    series = page.evaluate(READ_SERIES)
    in_force = stored_gates_in_force(live_server.sessions, rid)
    assert [s["student"] for s in series] == list(TRIO)
    for s in series:
        assert s["points"] == sum(1 for (_, name) in in_force if name == s["student"]) == 3 and s["line"]
    assert len({s["color"] for s in series}) == 3
    legend = page.locator("#gates .delta-legend .legend")
    expect(legend).to_have_count(3)
    for i, name in enumerate(TRIO):
        expect(legend.nth(i)).to_contain_text(name)
    expect(page.locator("#gates polyline.tau-line")).to_be_visible()
    assert page.js_errors == []


def test_the_blocks_refresh_when_the_worker_records_a_round(page, live_server, tmp_path):
    from app.worker.recorder import Recorder

    db = live_server.sessions
    rid = seed_peers(db, rounds=1, name="trio live", status="running")
    page.goto(f"{live_server.url}/runs/{rid}")
    assert [s["points"] for s in page.evaluate(READ_SERIES)] == [1, 1, 1]
    assert [m["points"] for m in page.evaluate(READ_MULTIPLES)] == [2, 2, 2]
    page.evaluate("window.__marker = 1")
    with db() as s:
        worker_id = s.get(Run, rid).worker_id
    recorder = Recorder(db, rid, worker_id, out_dir=tempfile.mkdtemp(dir=tmp_path))
    recorder.buffer.extend(peer_events(TRIO, DOMAINS3, rounds=2, first_round=2))
    recorder.flush()
    for name in TRIO:
        expect(page.locator(f'#gates .delta-series[data-student="{name}"] circle')).to_have_count(2, timeout=10_000)
        expect(page.locator(f'#pareto .pareto-multiple[data-student="{name}"] svg circle')).to_have_count(
            3, timeout=10_000)
    assert page.evaluate("window.__marker") == 1   # refreshed in place, not reloaded
    assert page.js_errors == []


def test_compare_shows_the_trio_next_to_the_pair(page, live_server, runs):
    trio, pair = runs["trio"], runs["pair"]
    page.goto(f"{live_server.url}/compare?runs={pair},{trio}")
    heads = page.locator("#peers thead th[data-run]")
    expect(heads).to_have_count(2)
    assert [int(x) for x in heads.evaluate_all("hs => hs.map(h => h.dataset.run)")] == [trio, pair]  # trio first
    rows = page.locator("#peers tbody tr")
    expect(rows).to_have_count(6)   # chem and phys are shared, over the trio's three domains; bio is not
    stored = {rid: stored_scores(live_server.sessions, rid) for rid in (trio, pair)}
    for name in ("chem", "phys"):
        for domain in DOMAINS3:
            row = page.locator(f'#peers tr[data-student="{name}"][data-domain="{domain}"]')
            for rid in (trio, pair):
                cell = row.locator(f'td[data-run="{rid}"] .peer-change')
                rounds = stored[rid][name]
                if domain not in rounds[0]:
                    expect(cell).to_have_text("absent")
                    continue
                change = round(rounds[max(rounds)][domain] - rounds[0][domain], 3)
                expect(cell).to_have_text("0.000" if change == 0 else f"{change:+.3f}")
    expect(page.locator("#peers")).to_contain_text("In one run only: bio")
    assert page.js_errors == []
