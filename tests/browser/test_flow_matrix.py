"""The run page's tutoring-flow matrix in a real browser: the numbers of the flows service
(``app.services.flows``) for every cell, a student name with markup shown as text, links into the HTML
exchanges page (whose filter form keeps tutor and tutee when another filter changes), a run with N peers
(every tutor's feedback in routing mode ``all``, a quarantined tutor's shadow feedback on its own line),
and the block's live refresh when the worker records a new round. Runs are recorded through the worker's
recorder (``seed.seed_events``) with the flow-matrix tests' events (``tests/app/test_flows.py``)."""

from __future__ import annotations

import json
import re
import tempfile
from urllib.parse import parse_qsl, urlsplit

import pytest
from playwright.sync_api import expect
from sqlalchemy import func, select

import seed
from app.models import Exchange, Run
from app.services import flows
from app.worker.recorder import Recorder
from test_flows import flow_events, n_peer_events  # tests/app is on pytest's pythonpath
from trust_events import DOMAINS

NAME = "<b>x</b>"   # student names are validated in a config, but the matrix shows what the rows carry
STUDENTS = ("chem", NAME, "bio")

#: Every cell of the rendered matrix, read in one round trip.
READ_MATRIX = """() => [...document.querySelectorAll('#flows td.flow-cell')].map(td => ({
  tutor: td.dataset.tutor, tutee: td.dataset.tutee, css: td.className, text: td.textContent.trim(),
  domains: [...td.querySelectorAll('li')].map(li => ({
    domain: li.dataset.domain, text: li.textContent.replace(/\\s+/g, ' ').trim(),
    href: li.querySelector('a.flow-domain')?.getAttribute('href') ?? null,
    exchanges: li.querySelector('.flow-exchanges')?.textContent ?? null,
    feedback: li.querySelector('.flow-feedback')?.textContent ?? null,
    kept: li.querySelector('.flow-kept')?.textContent.trim() ?? null,
    broken: li.querySelector('.flow-break')?.textContent ?? null,
    change: li.querySelector('.flow-change')?.textContent ?? null,
    shadow: li.querySelector('.flow-shadow')?.textContent ?? null}))}))"""


def rate(num: int, den: int) -> str:
    return f"{num / den:.0%} ({num}/{den})" if den else "–"


def change(v: float | None) -> str:
    return "–" if v is None else ("0.00" if round(v, 2) == 0 else f"{v:+.2f}")


def shown(d: dict) -> bool:
    """An entry shows when the tutor leads exchanges there or wrote feedback there (on another tutor's
    exchanges, or in the shadow)."""
    return bool(d["exchanges"] or d["feedback"] or d["shadow"] or d["shadow_probes"])


def expected_entry(d: dict) -> dict:
    if not shown(d):
        return {"exchanges": None, "feedback": None, "kept": None, "broken": None, "change": None, "shadow": None}
    return {"exchanges": f"{d['exchanges']} ex.", "feedback": f"fb {d['feedback']}",
            "kept": rate(d["kept"], d["feedback"]), "broken": rate(d["breaks"], d["opportunities"]),
            "change": change(d["accuracy_change"]),
            "shadow": f"shadow {d['shadow']} · {d['shadow_probes']} probed" if d["shadow"] or d["shadow_probes"]
            else None}


def check_matrix(rendered: list[dict], matrix: dict) -> None:
    """The page shows every (tutor, tutee) pair once, the service's numbers in each domain entry."""
    cells = {(c["tutor"], c["tutee"]): c for c in rendered}
    assert len(cells) == len(rendered) == len(matrix["students"]) ** 2
    for row in matrix["rows"]:
        for cell in row["cells"]:
            got = cells[(row["tutor"], cell["tutee"])]
            if not any(shown(d) for d in cell["domains"]):
                assert got["domains"] == [] and got["text"] == "no exchanges", got
                continue
            assert [d["domain"] for d in got["domains"]] == matrix["domains"]
            for want, entry in zip(cell["domains"], got["domains"], strict=True):
                assert {k: entry[k] for k in ("exchanges", "feedback", "kept", "broken", "change", "shadow")} == \
                    expected_entry(want), (row["tutor"], cell["tutee"], want)
                assert (entry["href"] is not None) == bool(want["exchanges"])   # a link when there is a list
    for tutor in matrix["students"]:
        diag = cells[(tutor, tutor)]
        assert "flow-self" in diag["css"] and diag["text"] == "—"


@pytest.fixture(scope="module")
def flow_run(live_server):
    events = flow_events(STUDENTS, skip={("bio", "chem")}, silent={("bio", "chemistry")})
    return seed.seed_events(live_server.sessions, events, name="flow matrix", students=STUDENTS).run_id


def test_matrix_shows_the_flows_service_numbers_and_escapes_names(page, live_server, flow_run):
    page.goto(f"{live_server.url}/runs/{flow_run}")
    matrix = flows.flows(live_server.sessions, flow_run).model_dump()
    heads = page.locator("#flows thead th")
    expect(heads).to_have_text(["tutor ↓ · tutee →", *STUDENTS])
    expect(page.locator("#flows tbody th")).to_have_text(list(STUDENTS))
    assert page.locator("#flows table b").count() == 0          # the name is text, not markup
    check_matrix(page.evaluate(READ_MATRIX), matrix)
    never = page.locator('#flows td[data-tutor="bio"][data-tutee="chem"]')
    expect(never).to_have_text("no exchanges")
    silent = page.locator(f'#flows td[data-tutor="bio"][data-tutee={json.dumps(NAME)}] li[data-domain="chemistry"]')
    expect(silent.locator(".flow-feedback")).to_have_text("fb 0")
    assert page.js_errors == []


def test_a_cell_link_opens_its_exchanges_and_the_form_keeps_tutor_and_tutee(page, live_server, flow_run):
    matrix = flows.flows(live_server.sessions, flow_run).model_dump()
    cell = next(d for r in matrix["rows"] if r["tutor"] == "chem" for c in r["cells"] if c["tutee"] == NAME
                for d in c["domains"] if d["domain"] == "physics")
    page.goto(f"{live_server.url}/runs/{flow_run}")
    entry = page.locator(f'#flows td[data-tutor="chem"][data-tutee={json.dumps(NAME)}] li[data-domain="physics"]')
    entry.get_by_role("link", name="physics").click()
    page.wait_for_url(re.compile(rf"/runs/{flow_run}/exchanges\?"))
    assert dict(parse_qsl(urlsplit(page.url).query)) == {"tutor": "chem", "tutee": NAME, "domain": "physics"}
    rows = page.locator("#rows tr:not([hidden])")
    expect(rows).to_have_count(cell["exchanges"])
    assert set(rows.locator("td:nth-child(4)").all_text_contents()) == {f"{NAME} ← chem"}
    assert set(rows.locator("td:nth-child(5)").all_text_contents()) == {"physics"}
    expect(page.get_by_label("Tutor", exact=True)).to_have_value("chem")
    expect(page.get_by_label("Tutee", exact=True)).to_have_value(NAME)
    # another filter changes: the form sends tutor and tutee with it
    page.get_by_label("Verdict").select_option("true")
    page.wait_for_url(re.compile(r"correct=true"))
    assert dict(parse_qsl(urlsplit(page.url).query)) == {"tutor": "chem", "tutee": NAME, "domain": "physics",
                                                         "correct": "true"}  # (empty fields: any)
    with live_server.sessions() as s:
        correct = s.scalar(select(func.count()).select_from(Exchange).where(
            Exchange.run_id == flow_run, Exchange.tutor == "chem", Exchange.tutee == NAME,
            Exchange.domain == "physics", Exchange.correct.is_(True)))
    assert 0 < correct < cell["exchanges"]
    expect(rows).to_have_count(correct)
    # the kept figure opens exactly the kept feedback it counts
    page.goto(f"{live_server.url}/runs/{flow_run}")
    entry.locator(".flow-kept a").click()
    page.wait_for_url(re.compile(r"category=kept"))
    expect(rows).to_have_count(cell["kept"])
    expect(page.get_by_label("Feedback category")).to_have_value("kept")
    assert page.js_errors == []


def test_n_peers_every_tutors_feedback_and_the_shadow(page, live_server):
    """bio's feedback on chem's questions is all on the exchanges the other tutor leads: its entry links only
    its feedback figure, which opens those exchanges; a quarantined tutor's shadow feedback has its own line,
    names still text."""
    run_id = seed.seed_events(live_server.sessions, n_peer_events(STUDENTS), name="flow n peers", students=STUDENTS,
                              domains=DOMAINS).run_id
    page.goto(f"{live_server.url}/runs/{run_id}")
    matrix = flows.flows(live_server.sessions, run_id).model_dump()
    check_matrix(page.evaluate(READ_MATRIX), matrix)
    assert page.locator("#flows table b").count() == 0
    bio = page.locator('#flows td[data-tutor="bio"][data-tutee="chem"] li[data-domain="chemistry"]')
    expect(bio.locator(".flow-exchanges")).to_have_text("0 ex.")
    expect(bio.locator("a")).to_have_count(1)
    assert "another tutor leads" in bio.locator(".flow-feedback").get_attribute("title")
    expect(bio.locator(".flow-shadow")).to_have_text(re.compile(r"^shadow [1-9]"))
    named = page.locator(f'#flows td[data-tutor={json.dumps(NAME)}][data-tutee="chem"] .flow-shadow').first
    assert NAME in named.get_attribute("title")    # the name is text in the title
    expect(page.locator("#flows p.muted")).to_contain_text("shadow")
    cell = next(d for r in matrix["rows"] if r["tutor"] == "bio" for c in r["cells"] if c["tutee"] == "chem"
                for d in c["domains"] if d["domain"] == "chemistry")
    assert cell["feedback"] == cell["peer_feedback"] > 0
    bio.locator(".flow-feedback a").click()
    page.wait_for_url(re.compile(r"feedback_from=bio"))
    rows = page.locator("#rows tr:not([hidden])")
    expect(rows).to_have_count(cell["feedback"])
    expect(page.get_by_label("Feedback from")).to_have_value("bio")
    assert set(rows.locator("td:nth-child(5)").all_text_contents()) == {"chemistry"}
    assert page.js_errors == []


def test_matrix_refreshes_when_the_worker_records_a_round(page, live_server, tmp_path):
    events = flow_events(("chem", "phys"), rounds=2)
    first = [e for e in events if e.round < 2]
    seeded = seed.seed_events(live_server.sessions, first, name="flow live", status="running")
    rid = seeded.run_id
    page.goto(f"{live_server.url}/runs/{rid}")
    before = flows.flows(live_server.sessions, rid).model_dump()
    check_matrix(page.evaluate(READ_MATRIX), before)
    page.evaluate("window.__marker = 1")
    with live_server.sessions() as s:
        worker_id = s.get(Run, rid).worker_id
    recorder = Recorder(live_server.sessions, rid, worker_id, out_dir=tempfile.mkdtemp(dir=tmp_path))
    recorder.buffer.extend(e for e in events if e.round == 2)   # round 2 in one transaction, as one flush
    recorder.flush()
    after = flows.flows(live_server.sessions, rid).model_dump()
    cell = page.locator('#flows td[data-tutor="phys"][data-tutee="chem"] li[data-domain="chemistry"]')
    want = expected_entry(after["rows"][1]["cells"][0]["domains"][0])
    assert want != expected_entry(before["rows"][1]["cells"][0]["domains"][0])
    expect(cell.locator(".flow-exchanges")).to_have_text(want["exchanges"], timeout=10_000)
    expect(cell.locator(".flow-change")).to_have_text(want["change"], timeout=10_000)
    check_matrix(page.evaluate(READ_MATRIX), after)
    assert page.evaluate("window.__marker") == 1
    assert page.js_errors == []
