"""The HTML dashboard through TestClient: every page renders whole and as an htmx fragment, unknown ids
are HTML 404s, the launch form reports errors next to the field, forms go through the services.

Seeded with ORM rows through the real models into a database migrated by Alembic (``db_url``: SQLite
and PostgreSQL)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from app.models import Approval, Override, Replay, Run

import seed
from api_seed import local_client, with_csrf

HX = {"HX-Request": "true"}


@pytest.fixture
def web(db_url, tmp_path):
    from app.db import make_engine, session_factory
    from app.main import create_app
    from app.settings import Settings
    from app import web as web_pkg

    app = create_app(Settings(database_url=db_url, data_dir=tmp_path / "data"))
    web_pkg.install(app)  # no-op when create_app mounted it already
    engine = make_engine(db_url)
    sf = session_factory(engine)
    ids = seed.dashboard_run(sf, name="seeded")
    ids["xss"] = seed.dashboard_run(sf, name="xss", xss=True)
    with local_client(app) as client:
        with_csrf(client)
        client.ids = ids
        client.sessions = sf
        yield client
    engine.dispose()


def _pages(ids):
    rid, ex = ids["run"], ids["kept"]
    return [("/", "runs_table"), ("/runs/new", "launch_form"), (f"/runs/{rid}", "run_status"),
            (f"/runs/{rid}", "feed"), (f"/runs/{rid}", "gates"), (f"/runs/{rid}", "pareto"),
            (f"/runs/{rid}", "overrides"), (f"/runs/{rid}/exchanges", "table"), (f"/exchanges/{ex}", "override_panel"),
            (f"/exchanges/{ex}", "replays"), (f"/runs/{rid}/approvals", "queue"), (f"/compare?runs={rid}", None)]


def test_every_page_renders_full_and_as_fragment(web):
    for url, block in _pages(web.ids):
        full = web.get(url)
        assert full.status_code == 200, (url, full.text[:500])
        assert full.text.lstrip().lower().startswith("<!doctype html>"), url
        assert "htmx-2.0.11.min.js" in full.text and "Content-Security-Policy" in full.headers
        frag = web.get(url, headers=HX)
        assert frag.status_code == 200, url
        assert "<!doctype" not in frag.text.lower() and "<html" not in frag.text, url
        if block:
            target = block.replace("_", "-")
            part = web.get(url, headers={**HX, "HX-Target": target})
            assert part.status_code == 200
            assert f'id="{target}"' in part.text, (url, block)
            assert "<html" not in part.text


def test_unknown_ids_are_html_404s(web):
    for url in ("/runs/999999", "/runs/999999/exchanges", "/exchanges/999999", "/runs/999999/approvals",
                "/exchanges/abc", "/runs/0", f"/exchanges/{web.ids['kept']}/replays/999999", "/compare?runs=999999",
                "/runs/999999/charts.json"):
        r = web.get(url)
        assert r.status_code == 404, (url, r.status_code)
        assert "text/html" in r.headers["content-type"], url
        assert "Not found" in r.text
    assert web.get("/runs/999999", headers=HX).status_code == 404
    bad = web.get(f"/runs/{web.ids['run']}/exchanges?round=x")
    assert bad.status_code == 422 and "round" in bad.text


def test_run_page_shows_newest_exchanges_only_and_live_hookups(web):
    ids = web.ids
    html = web.get(f"/runs/{ids['run']}").text
    assert 'sse-connect="/api/v1/runs/' in html and 'hx-ext="sse"' in html and 'sse-close="end"' in html
    assert 'hx-trigger="sse:exchange throttle:1s"' in html
    # the feed lists the newest first and never more than FEED_LIMIT
    shown = [int(x) for x in re.findall(r'<tr id="ex-(\d+)"', html)]
    assert shown == sorted(ids["exchanges"], reverse=True)[: len(shown)] and 0 < len(shown) <= 20
    assert "Pareto-improved" in html and "pareto-region" in html
    charts = web.get(f"/runs/{ids['run']}/charts.json").json()
    assert charts["x"] == [0, 1, 2, 3]
    assert charts["kept_rate"]["series"][0][0] == pytest.approx(0.5)
    assert len(charts["anchoring"]["series"]) == 5
    # how rollouts ended: the three finish shares and the parse-failure share, and the mean length
    eos, stop, length, parse = charts["finish"]["series"]
    assert eos == [0.75] * 4 and stop == [0.0] * 4 and length == [0.25] * 4 and parse == [0.25] * 4
    assert charts["length"]["series"][0] == [18.0, 19.0, 20.0, 21.0]
    assert 'data-chart="finish"' in html and 'data-chart="length"' in html
    # the tutee's weight distance from the run's start, one series per student (phys is every step's tutee)
    assert charts["weight_l2"]["labels"] == ["‖θ−θ₀‖ (chem tutee)", "‖θ−θ₀‖ (phys tutee)"]
    assert charts["weight_l2"]["series"][0] == [None] * 4
    assert charts["weight_l2"]["series"][1] == pytest.approx([0.01, 0.02, 0.03, 0.04])
    assert 'data-chart="weight_l2"' in html


def test_long_runs_chart_a_stride_of_their_steps(web, monkeypatch):
    """Over MAX_CHART_POINTS steps, a chart reads every stride-th step and the last (chosen in SQL), and
    the divergence curve is each step's stored mean over its exchanges."""
    from app.services import run_views

    full = run_views.chart_data(web.sessions, web.ids["run"])
    assert full["x"] == [0, 1, 2, 3] and all(v is not None for v in full["divergence"]["series"][0])
    monkeypatch.setattr(run_views, "MAX_CHART_POINTS", 2)
    strided = run_views.chart_data(web.sessions, web.ids["run"])
    assert strided["x"] == [0, 2, 3]
    assert strided["divergence"]["series"][0] == [full["divergence"]["series"][0][i] for i in (0, 2, 3)]
    assert strided["loss"]["series"][1] == [full["loss"]["series"][1][i] for i in (0, 2, 3)]


def test_feed_is_capped(web):
    from app.services import run_views

    rows = run_views.exchange_feed(web.sessions, web.ids["run"], limit=5)
    assert [r["id"] for r in rows] == sorted(web.ids["exchanges"], reverse=True)[:5]


def test_exchanges_table_filters_and_keyset_paging(web):
    rid = web.ids["run"]
    r = web.get(f"/runs/{rid}/exchanges?correct=false")
    ids = [int(x) for x in re.findall(r'<tr id="ex-(\d+)"', r.text)]
    assert ids and all(i in web.ids["exchanges"] for i in ids)
    assert 'class="bad">wrong' in r.text and 'class="ok">correct' not in r.text
    assert 'id="live-head"' not in r.text  # filtered: no live head
    top = max(web.ids["exchanges"])
    page2 = web.get(f"/runs/{rid}/exchanges?before={top - 3}", headers={**HX, "HX-Target": "more-rows"})
    got = [int(x) for x in re.findall(r'<tr id="ex-(\d+)"', page2.text)]
    assert got == sorted([i for i in web.ids["exchanges"] if i < top - 3], reverse=True)
    live = web.get(f"/runs/{rid}/exchanges?after={top - 2}", headers=HX)
    assert [int(x) for x in re.findall(r'<tr id="ex-(\d+)"', live.text)] == [top, top - 1]
    assert 'hx-swap-oob="outerHTML"' in live.text and f"after={top}" in live.text
    unfiltered = web.get(f"/runs/{rid}/exchanges").text
    assert 'id="live-head"' in unfiltered and "sse:exchange" in unfiltered


def test_exchange_page_shows_everything_escaped(web):
    d = web.get(f"/exchanges/{web.ids['xss']['kept']}").text
    assert "<script>window.__xss" not in d and "<img src=x" not in d
    assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in d
    assert "&lt;img src=x onerror=&#34;window.__xss=2&#34;&gt;" in d
    plain = web.get(f"/exchanges/{web.ids['kept']}").text
    assert '<mark class="concept">Hydrogen</mark>' in plain  # case-insensitive highlight in the question
    assert 'id="heat-div"' in plain and 'id="heat-eff"' in plain and 'class="tok' in plain
    assert "Gold answer" in plain and "Gate record of chem" in plain and "Zinc displaces hydrogen" in plain
    table = web.get(f"/runs/{web.ids['xss']['run']}/exchanges").text
    assert "<script>window.__xss" not in table and "&lt;script&gt;" in table
    approvals = web.get(f"/runs/{web.ids['xss']['run']}/approvals").text
    assert "<img src=x" not in approvals and "&lt;img src=x" in approvals


def test_launch_validation_errors_are_inline(web):
    base = {"preset": "tiny", "name": "x", "schedule.rounds": "0", "rollout.n": "abc", "gating.tau": "0.2"}
    r = web.post("/runs/new", data=base)
    assert r.status_code == 422
    assert re.search(r'id="e-f-schedule-rounds">[^<]*greater than or equal to 1', r.text)
    assert re.search(r'id="e-f-rollout-n">[^<]*valid integer', r.text)
    assert 'id="f-schedule-rounds" name="schedule.rounds" value="0"' in r.text  # the user's input is kept
    frag = web.post("/runs/new", data=base, headers=HX)
    assert frag.status_code == 422 and frag.text.lstrip().startswith('<form id="launch-form"')
    # a validator across fields lands at the form level
    r = web.post("/runs/new", data={"preset": "tiny", "students.0.name": "same", "students.1.name": "same"})
    assert r.status_code == 422 and "different names" in r.text and 'id="form-errors"' in r.text
    # a domain that is not in the pair is shown next to the domain
    r = web.post("/runs/new", data={"preset": "tiny", "students.0.strong_domain": "biology"})
    assert r.status_code == 422 and "biology" in r.text
    # advanced editor: YAML errors and validation errors go under the editor
    r = web.post("/runs/new", data={"preset": "tiny", "use_advanced": "1", "config_text": "a: [1"})
    assert r.status_code == 422 and 'id="e-f-config-text"' in r.text and "not valid YAML" in r.text
    with web.sessions() as s:
        assert s.query(Run).count() == 2  # nothing was created


def test_launch_creates_a_run_from_fields_and_from_yaml(web):
    r = web.post("/runs/new", data={"preset": "tiny", "name": "from form", "schedule.rounds": "1",
                                    "gating.tau": "0.3", "students.0.strong_domain": ""}, follow_redirects=False)
    assert r.status_code == 303
    rid = int(r.headers["location"].rsplit("/", 1)[1])
    with web.sessions() as s:
        run = s.get(Run, rid)
        assert run.status == "queued" and run.name == "from form"
        assert run.config["schedule"]["rounds"] == 1 and run.config["gating"]["tau"] == 0.3
        assert run.config["students"][0]["strong_domain"] is None
    page = web.get("/runs/new?preset=tiny")
    text = re.search(r'<textarea id="f-config-text"[^>]*>(.*?)</textarea>', page.text, re.S).group(1)
    import html
    import yaml

    cfg = yaml.safe_load(html.unescape(text))
    cfg["name"] = "from yaml"
    r = web.post("/runs/new", data={"preset": "tiny", "use_advanced": "1", "config_text": json.dumps(cfg)},
                 headers=HX)
    assert r.status_code == 204 and re.fullmatch(r"/runs/\d+", r.headers["HX-Redirect"])


def test_run_controls_and_run_overrides_go_through_the_services(web):
    rid = web.ids["run"]
    r = web.post(f"/runs/{rid}/pause", headers={**HX, "HX-Target": "run-status"})
    assert r.status_code == 200 and 'id="run-status"' in r.text and "pause requested" in r.text
    assert web.post(f"/runs/{rid}/resume", follow_redirects=False).status_code == 303
    with web.sessions() as s:
        assert s.get(Run, rid).requested_action is None
    r = web.post(f"/runs/{rid}/overrides", data={"kind": "set_tau", "tau": "x"}, headers=HX)
    assert r.status_code == 422 and 'id="e-ov-tau"' in r.text
    r = web.post(f"/runs/{rid}/overrides", data={"kind": "set_tau", "tau": "99"}, headers=HX)
    assert r.status_code == 422 and 'id="e-ov-tau"' in r.text
    r = web.post(f"/runs/{rid}/overrides", data={"kind": "mute_tutor", "student": "chem"}, headers=HX)
    assert r.status_code == 200 and "mute_tutor" in r.text
    r = web.post(f"/runs/{rid}/overrides", data={"kind": "set_mode", "mode": "always"}, follow_redirects=False)
    assert r.status_code == 303
    with web.sessions() as s:
        kinds = {(o.kind, json.dumps(o.payload, sort_keys=True), o.author)
                 for o in s.query(Override).filter_by(run_id=rid, status="pending")}
    assert ("mute_tutor", '{"student": "chem"}', "dashboard") in kinds
    assert ("set_mode", '{"value": "always"}', "dashboard") in kinds
    # a quarantine with its reason (shown escaped in the audit table), a lift without one, a reason too long
    r = web.post(f"/runs/{rid}/overrides", data={"kind": "quarantine", "student": "phys",
                                                  "reason": "breaks <i>chemistry</i>"}, headers=HX)
    assert r.status_code == 200 and "quarantine" in r.text and "(breaks &lt;i&gt;chemistry&lt;/i&gt;)" in r.text
    assert web.post(f"/runs/{rid}/overrides", data={"kind": "lift", "student": "phys", "reason": ""},
                    headers=HX).status_code == 200
    r = web.post(f"/runs/{rid}/overrides", data={"kind": "lift", "student": "phys", "reason": "x" * 501}, headers=HX)
    assert r.status_code == 422 and 'id="e-ov-reason"' in r.text
    with web.sessions() as s:
        trust = [(o.kind, o.payload) for o in s.query(Override).filter(
            Override.run_id == rid, Override.kind.in_(("quarantine", "lift"))).order_by(Override.id)]
    assert trust == [("quarantine", {"student": "phys", "value": "breaks <i>chemistry</i>"}),
                     ("lift", {"student": "phys"})]
    r = web.post(f"/runs/{rid}/cancel", headers={**HX, "HX-Target": "run-status"})
    assert "cancel requested" in r.text


def test_control_on_a_final_run_is_shown_not_raised(web):
    rid = web.ids["run"]
    with web.sessions() as s:
        s.get(Run, rid).status = "finished"
        s.commit()
    r = web.post(f"/runs/{rid}/pause", headers=HX)
    assert r.status_code == 409 and "cannot be paused" in r.text and 'id="run-status"' in r.text
    r = web.post(f"/runs/{rid}/overrides", data={"kind": "set_tau", "tau": "0.3"}, headers=HX)
    assert r.status_code == 422 and "finished" in r.text


def test_exchange_override_forms(web):
    ex = web.ids["kept"]
    r = web.post(f"/exchanges/{ex}/override", data={"action": "edit", "text": "  "}, headers=HX)
    assert r.status_code == 422 and "non-empty" in r.text
    r = web.post(f"/exchanges/{ex}/override", data={"action": "edit", "text": "New <b>hint</b>"}, headers=HX)
    assert r.status_code == 200 and 'id="override-panel"' in r.text
    assert "Pending override" in r.text and "New &lt;b&gt;hint&lt;/b&gt;" in r.text
    assert web.post(f"/exchanges/{ex}/override", data={"action": "reject"}, follow_redirects=False).status_code == 303
    with web.sessions() as s:
        rows = s.query(Override).filter_by(exchange_id=ex).order_by(Override.id).all()
        assert [(o.kind, o.payload) for o in rows] == [("edit", {"text": "New <b>hint</b>"}), ("reject", {})]
    assert web.post("/exchanges/999999/override", data={"action": "reject"}).status_code == 404


def test_replay_form_queues_and_fragment_polls_until_done(web):
    ex = web.ids["kept"]
    r = web.post(f"/exchanges/{ex}/replay", data={"feedback": "Think about gases.", "tutor_checkpoint": ""},
                 headers={**HX, "HX-Target": "replays"})
    assert r.status_code == 202 and 'id="replays"' in r.text
    with web.sessions() as s:
        rp = s.query(Replay).filter_by(exchange_id=ex, status="queued").one()
        assert rp.inputs["feedback"] == "Think about gases."
        rp_id = rp.id
    poll = web.get(f"/exchanges/{ex}/replays/{rp_id}", headers=HX)
    assert 'hx-trigger="every 1s"' in poll.text and "queued" in poll.text
    done = web.get(f"/exchanges/{ex}/replays/{web.ids['replay']}", headers=HX)
    assert "every 1s" not in done.text and "answer distribution" in done.text and "80.0%" in done.text
    assert done.text.count('class="heatmap') == 3
    r = web.post(f"/exchanges/{ex}/replay", data={"feedback": "", "tutor_checkpoint": str(web.ids["checkpoint"])},
                 headers=HX)
    assert r.status_code == 202
    r = web.post(f"/exchanges/{ex}/replay", data={"feedback": "", "tutor_checkpoint": "nope"}, headers=HX)
    assert r.status_code == 422 and "no checkpoint" in r.text


def test_approval_decisions(web):
    ap = web.ids["approval"]
    rid = web.ids["run"]
    r = web.post(f"/approvals/{ap}", data={"decision": "edit", "text": "", "run_id": rid}, headers=HX)
    assert r.status_code == 422 and f'id="e-ap-{ap}"' in r.text
    r = web.post(f"/approvals/{ap}", data={"decision": "approve", "run_id": rid}, headers=HX)
    assert r.status_code == 200 and "Nothing is waiting" in r.text and "approved" in r.text
    with web.sessions() as s:
        a = s.get(Approval, ap)
        assert a.status == "approved" and a.decided_by == "dashboard"
    r = web.post(f"/approvals/{ap}", data={"decision": "reject", "run_id": rid}, headers=HX)
    assert r.status_code == 422 and "already approved" in r.text
    assert web.post("/approvals/999999", data={"decision": "approve"}).status_code == 404


def test_compare_page(web):
    a, b = web.ids["run"], web.ids["xss"]["run"]
    r = web.get(f"/compare?runs={a},{b}")
    assert r.status_code == 200 and r.text.count("<polyline") == 4
    data = re.search(r'<script type="application/json" id="compare-data">(.*?)</script>', r.text, re.S).group(1)
    parsed = json.loads(data)
    assert len(parsed["curves"]["loss"]["series"]) == 2
    assert web.get("/compare?pick=1&pick=2").status_code == 200
    assert web.get("/compare?runs=1,x").status_code == 422
    assert web.get("/compare").status_code == 200


def test_fork_from_a_checkpoint(web):
    rid = web.ids["run"]
    r = web.post(f"/runs/{rid}/fork", data={"checkpoint_id": str(web.ids["checkpoint"]), "name": "forked"},
                 follow_redirects=False)
    assert r.status_code == 303
    with web.sessions() as s:
        new = s.get(Run, int(r.headers["location"].rsplit("/", 1)[1]))
        assert new.parent_run_id == rid and new.name == "forked"


def test_concept_pieces_and_heatmap_build_no_markup():
    from app.web.tokens import concept_pieces, heatmap

    assert concept_pieces("Zinc and ZINC <b>", "zinc") == [("Zinc", True), (" and ", False), ("ZINC", True),
                                                         (" <b>", False)]
    assert concept_pieces("abc", None) == [("abc", False)]
    assert concept_pieces("a.c", ".") == [("a", False), (".", True), ("c", False)]
    h = heatmap(["<s>", "b"], [0.5, -0.25], "t", "effect")
    assert [c["token"] for c in h.cells] == ["<s>", "b"] and h.cells[0]["label"] == "+0.500000"
    assert h.cells[1]["level"] == 0.5 and h.cells[1]["sign"] == "neg"


def test_exchange_page_and_table_show_how_the_rollout_ended(web):
    from app.models import Exchange

    with web.sessions() as s:
        reasons = {i: s.get(Exchange, i).finish_reason for i in web.ids["exchanges"]}
    assert set(reasons.values()) == {"eos", "length"}
    shown = {"eos": "stopped (EOS)", "length": "cut at limit"}
    for ex_id, reason in reasons.items():
        page = web.get(f"/exchanges/{ex_id}").text
        m = re.search(r'<span id="finish-reason">(.*?)</span></p>', page, re.S)
        assert m and shown[reason] in m.group(1), (ex_id, reason)
        assert shown[{"eos": "length", "length": "eos"}[reason]] not in m.group(1)
    table = web.get(f"/runs/{web.ids['run']}/exchanges").text
    assert '<th scope="col">ended</th>' in table
    rows = dict(re.findall(r'<tr id="ex-(\d+)">(.*?)</tr>', table, re.S))
    for ex_id, reason in reasons.items():
        assert shown[reason] in rows[str(ex_id)]
    # an exchange stored before finish reasons were recorded says so
    with web.sessions() as s:
        s.get(Exchange, web.ids["kept"]).finish_reason = None
        s.commit()
    page = web.get(f"/exchanges/{web.ids['kept']}").text
    assert re.search(r'<span id="finish-reason">.*?unknown.*?</span></p>', page, re.S)


def test_break_rate_is_conditional_with_counts_and_gates_show_their_standard_error(web):
    """Seed: 4 break samples, 3 right without f (one at g=2 is not), 1 of those broken (g=0): the rate is
    1/3 (broken / right without f), not 1/4 (broken / samples); gate records carry Δ ± SE."""
    rid = web.ids["run"]
    html = web.get(f"/runs/{rid}").text
    assert "33.3%" in html and "1 broken / 3 right without f; 4 probed" in html
    breaks = web.get(f"/runs/{rid}", headers={**HX, "HX-Target": "breaks"}).text
    assert "right without f" in breaks and "25.0%" not in breaks
    gates = web.get(f"/runs/{rid}", headers={**HX, "HX-Target": "gates"}).text
    assert "0.0500 ± 0.125" in gates and "0.500 ± 0.062" in gates and "(16 q × 2)" in gates
    assert 'class="se"' in gates   # the error bar on the Δ chart
    detail = web.get(f"/api/v1/runs/{rid}").json()
    assert detail["break_rate"]["samples"] == 4 and detail["break_rate"]["eligible"] == 3
    assert detail["break_rate"]["broken"] == 1 and detail["break_rate"]["rate"] == pytest.approx(1 / 3)
    assert detail["break_rate"]["by_cognizance"]["cognizant"]["eligible"] == 3
    api_gates = web.get(f"/api/v1/runs/{rid}/gates").json()
    assert {g["delta_se"] for g in api_gates} == {0.125}
    assert api_gates[0]["score_se"] == {"chemistry": 0.0625, "physics": 0.0625}
    assert api_gates[0]["n_items"] == {"chemistry": 16, "physics": 16}


def test_an_sse_block_refresh_reads_only_its_block(web):
    """A block that an SSE event refreshes issues a bounded number of queries, well under the full page's
    (the page read model reads per block: services.run_views.RUN_BLOCK_PARTS)."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    from app.services.run_views import RUN_BLOCK_PARTS

    statements: list[str] = []

    def count(conn, cursor, statement, *args):
        if statement.lstrip().upper().startswith("SELECT"):
            statements.append(statement)

    url = f"/runs/{web.ids['run']}"
    event.listen(Engine, "before_cursor_execute", count)
    try:
        assert web.get(url).status_code == 200
        full = len(statements)
        per_block = {}
        for block in RUN_BLOCK_PARTS:
            statements.clear()
            r = web.get(url, headers={**HX, "HX-Target": block.replace("_", "-")})
            assert r.status_code == 200 and f'id="{block.replace("_", "-")}"' in r.text
            per_block[block] = len(statements)
    finally:
        event.remove(Engine, "before_cursor_execute", count)
    assert full >= 12, full
    assert all(n <= 8 for n in per_block.values()), per_block
    assert per_block["pareto"] <= 3 and per_block["gates"] <= 3 and per_block["breaks"] <= 3, per_block
    assert all(n < full for n in per_block.values()), (full, per_block)
