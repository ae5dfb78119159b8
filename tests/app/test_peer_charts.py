"""The run page's and the compare page's charts of N students (issue 17; ``app.web.peer_charts``,
``app.services.peer_compare``) on SQLite and PostgreSQL: runs recorded through the worker's recorder
(``seed.seed_events``), every drawn number checked against the stored evaluation and gate rows, read back
in plain Python. A two-student run still renders as before; names with markup stay text."""

from __future__ import annotations

import re
from statistics import fmean

import pytest
from sqlalchemy import select

from app.db import session_factory, session_scope
from app.models import EvalResult, GateRecord
from app.services import run_views
from app.web import presenters
from opcod_core import events as ev
from opcod_core.vocabulary import pareto_improved

import seed
from api_seed import local_client

TRIO = ("chem", "phys", "bio")
DOMAINS3 = ("chemistry", "physics", "biology")
HX = {"HX-Request": "true"}


MODEL = {"chem": "tiny:llama", "phys": "tiny:qwen2", "bio": "tiny:llama"}
STRONG = {"chem": "chemistry", "phys": "physics", "bio": "biology"}


def accuracy_of(student: str, domain: str, round_: int, salt: int = 0) -> float:
    """A test accuracy (sixteenths: exact in binary) that rises each round on the student's own domain;
    elsewhere chem's rises too (Pareto-improved), phys's falls (not), any other student's holds (an odd
    ``salt`` reverses those trends; ``salt`` also moves the levels: another run's numbers)."""
    level = 4 + (len(student) * 5 + len(domain) * 3 + salt) % 8
    trend = 1 if STRONG.get(student) == domain else {"chem": 1, "phys": -1}.get(student, 0) * (-1) ** salt
    return (level + round_ * trend) / 16


def peer_events(students: tuple[str, ...], domains: tuple[str, ...], *, rounds: int = 2, salt: int = 0,
                missing=frozenset(), human: str | None = None, first_round: int = 0) -> list[ev.Event]:
    """Test evaluations of every student and domain before training and after each round (but ``missing``
    (student, domain, round)), validation evaluations that must not count, and a gate record per student
    and round (τ 0.2, then 0.3 from round 2 on, as after a set-τ override); ``human`` gets a human
    decision after its automatic one in the last round. ``first_round`` > 0: only the rounds from there
    (a worker recording a run's next round)."""
    out: list[ev.Event] = []
    for r in range(first_round, rounds + 1):
        if r:
            tau = 0.2 if r == 1 else 0.3
            for i, st in enumerate(students):
                delta = (i * 3 + r * 5) % 8 / 16
                scores = {d: accuracy_of(st, d, r - 1, salt) for d in domains}
                out.append(ev.GateEvent(round=r, student=st, scores=scores, best=scores, delta=delta, tau=tau,
                                        mode="cognizance", decision="tutor" if delta <= tau else "silent", k=2,
                                        delta_se=1 / 32))
                if st == human and r == rounds:
                    out.append(ev.GateEvent(round=r, student=st, scores=scores, best=scores, delta=delta, tau=tau,
                                            mode="manual", decision="silent" if delta <= tau else "tutor",
                                            source="human", reason="a person decided"))
        out += [ev.EvalEvent(round=r, student=st, domain=d, k=2, accuracy=accuracy_of(st, d, r, salt), n_items=16)
                for st in students for d in domains if (st, d, r) not in missing]
        out += [ev.EvalEvent(round=r, student=st, domain=d, split="validation", k=2, accuracy=0.99, n_items=4)
                for st in students for d in domains]
    return out


def seed_peers(db, students=TRIO, domains=DOMAINS3, *, name="trio", models=None, status="finished", **kw) -> int:
    """A run of ``students`` recorded through the recorder; a student keeps its model and strong domain
    across runs (``MODEL``, ``STRONG``; a domain the run has) unless ``models`` says otherwise."""
    models = models or tuple(MODEL.get(n, "tiny:llama") for n in students)
    strong = tuple(STRONG[n] if STRONG.get(n) in domains else domains[i % len(domains)]
                   for i, n in enumerate(students))
    return seed.seed_events(db, peer_events(students, domains, **kw), name=name, students=students,
                            domains=domains, models=models, strong=strong, status=status).run_id


# --- the reference: plain Python over the stored rows ----------------------------------------------------

def stored_scores(db, run_id: int) -> dict[str, dict[int, dict[str, float]]]:
    """student -> round -> domain -> test accuracy, as stored."""
    out: dict = {}
    with session_scope(db) as s:
        for e in s.scalars(select(EvalResult).where(EvalResult.run_id == run_id, EvalResult.split == "test")
                           .order_by(EvalResult.id)):
            out.setdefault(e.student, {}).setdefault(e.round, {})[e.domain] = e.accuracy
    return out


def stored_gates_in_force(db, run_id: int) -> dict[tuple[int, str], GateRecord]:
    with session_scope(db) as s:
        rows = list(s.scalars(select(GateRecord).where(GateRecord.run_id == run_id).order_by(GateRecord.id)))
        s.expunge_all()
    return {(g.round, g.student): g for g in rows}


def run_page(db, run_id: int) -> dict:
    return presenters.run_page(run_views.run_page(db, run_id))


@pytest.fixture
def db(engine):
    return session_factory(engine)


@pytest.fixture
def web(db_url, tmp_path):
    from app.db import make_engine
    from app.main import create_app
    from app.settings import Settings
    from app import web as web_pkg

    app = create_app(Settings(database_url=db_url, data_dir=tmp_path / "data"))
    web_pkg.install(app)
    engine = make_engine(db_url)
    with local_client(app) as client:
        client.sessions = session_factory(engine)
        yield client
    engine.dispose()


# --- the run page ----------------------------------------------------------------------------------------

def test_trio_pareto_small_multiples_match_the_stored_evaluations(db):
    rid = seed_peers(db, missing={("bio", "biology", 1)})
    seed_peers(db, name="other", salt=5)   # another run's rows never leak in
    page = run_page(db, rid)
    panels, stored = page["pareto"]["panels"], stored_scores(db, rid)
    assert page["pareto"]["wide"] and page["pareto"]["by_own"]
    assert [p["student"] for p in panels] == list(TRIO) and [p["position"] for p in panels] == [0, 1, 2]
    # the same axes in every panel: size, plot area, ticks; x is the student's own domain
    assert len({(p["w"], p["h"], p["x0"], p["x1"], p["y0"], p["y1"], str(p["ticks"])) for p in panels}) == 1
    assert panels[0]["w"] < 260   # small multiples
    for p, own in zip(panels, DOMAINS3, strict=True):
        others = [d for d in DOMAINS3 if d != own]
        assert (p["x_domain"], p["y_domains"]) == (own, others)
        (line,) = p["lines"]
        rounds = stored[p["student"]]
        complete = [r for r in sorted(rounds) if set(rounds[r]) == set(DOMAINS3)]
        assert [q["round"] for q in line["points"]] == complete
        for q in line["points"]:
            assert q["a"] == rounds[q["round"]][own]
            assert q["b"] == pytest.approx(fmean(rounds[q["round"]][d] for d in others))
        first, last = rounds[complete[0]], rounds[complete[-1]]
        assert line["improved"] == pareto_improved(first, last)
        assert line["init_acc"]["scores"] == first and line["last_acc"]["scores"] == last
    assert [q["round"] for q in panels[2]["lines"][0]["points"]] == [0, 2]   # bio's round 1 is incomplete
    verdicts = {p["student"]: p["lines"][0]["improved"] for p in panels}
    assert verdicts == {"chem": True, "phys": False, "bio": True}   # both verdicts occur: the check can fail


def test_trio_delta_series_match_the_gate_records_in_force(db):
    rid = seed_peers(db, rounds=3, human="phys")
    chart = run_page(db, rid)["gate_svg"]
    in_force = stored_gates_in_force(db, rid)
    assert [s["student"] for s in chart["series"]] == list(TRIO)
    assert len({s["color"] for s in chart["series"]}) == 3
    for s in chart["series"]:
        want = sorted((r, g) for (r, name), g in in_force.items() if name == s["student"])
        assert [(q["round"], q["delta"], q["tau"], q["decision"], q["source"]) for q in s["points"]] == \
            [(r, g.delta, g.tau, g.decision, g.source) for r, g in want]
        assert s["path"].count(",") == len(s["points"]) == 3
        xs = [q["x"] for q in s["points"]]
        assert xs == sorted(xs)
        # a larger Δ is drawn higher (smaller y)
        by_delta = sorted(s["points"], key=lambda q: q["delta"])
        assert all(a["y"] >= b["y"] for a, b in zip(by_delta, by_delta[1:]))
    human = [q for q in chart["series"][1]["points"] if q["source"] == "human"]
    assert len(human) == 1 and human[0]["round"] == 3
    taus = {r: g.tau for (r, _), g in in_force.items()}
    assert [(t["round"], t["tau"]) for t in chart["tau"]["steps"]] == sorted(taus.items())
    assert len({t["y"] for t in chart["tau"]["steps"]}) == 2   # τ changed after round 1
    colors = [p["lines"][0]["color"] for p in run_page(db, rid)["pareto"]["panels"]]
    assert colors == [s["color"] for s in chart["series"]]   # one colour per student in both charts


def test_trio_run_page_and_its_blocks_show_three_of_each(web):
    rid = seed_peers(web.sessions)
    html = web.get(f"/runs/{rid}").text
    assert html.count('class="pareto-multiple"') == 3 and html.count('class="delta-series"') == 3
    assert 'id="pareto" class="card wide"' in html and "mean of the other 2" in html
    for name in TRIO:
        assert f'data-student="{name}"' in html
    for block, marker in (("pareto", 'class="pareto-multiple"'), ("gates", 'class="delta-series"')):
        frag = web.get(f"/runs/{rid}", headers={**HX, "HX-Target": block})
        assert frag.status_code == 200 and frag.text.count(marker) == 3 and "<html" not in frag.text
    assert 'hx-trigger="sse:eval throttle:1s"' in html and 'hx-trigger="sse:gate throttle:1s"' in html


def test_a_two_student_run_renders_as_before(web):
    ids = seed.dashboard_run(web.sessions, name="pair")
    page = run_page(web.sessions, ids["run"])
    assert not page["pareto"]["wide"] and not page["pareto"]["by_own"]
    assert [p["student"] for p in page["pareto"]["panels"]] == ["chem", "phys"]
    assert all((p["w"], p["xlabel"], p["ylabel"]) == (260, "chemistry", "physics") for p in page["pareto"]["panels"])
    stored = stored_scores(web.sessions, ids["run"])
    for p in page["pareto"]["panels"]:
        rounds = stored[p["student"]]
        assert [(q["a"], q["b"]) for q in p["lines"][0]["points"]] == \
            [(rounds[r]["chemistry"], rounds[r]["physics"]) for r in sorted(rounds)]
    assert [len(s["points"]) for s in page["gate_svg"]["series"]] == [1, 1]
    html = web.get(f"/runs/{ids['run']}").text
    assert html.count('class="pareto-multiple"') == 2 and html.count('class="delta-series"') == 2
    assert 'id="pareto" class="card"' in html and "mean of the other" not in html
    assert "Pareto-improved" in html and "pareto-region" in html and 'class="se"' in html


def test_names_with_markup_are_text_on_the_run_and_compare_pages(web):
    bad = seed.XSS_SCRIPT
    trio = seed_peers(web.sessions, students=("chem", bad, "bio"))
    pair = seed_peers(web.sessions, students=("chem", bad), domains=DOMAINS3[:2], name=f"pair {bad}")
    for url in (f"/runs/{trio}", f"/compare?runs={trio},{pair}"):
        html = web.get(url).text
        assert bad not in html, url
        assert "&lt;script&gt;window.__xss=1&lt;/script&gt;" in html, url
    compare = web.get(f"/compare?runs={trio},{pair}").text
    assert compare.count('<tr data-student="&lt;script&gt;') == 3   # its domain rows in the shared table


def test_three_students_on_two_domains_keep_the_domain_axes(db):
    rid = seed_peers(db, domains=DOMAINS3[:2])
    m = run_page(db, rid)["pareto"]
    assert m["wide"] and not m["by_own"]
    stored = stored_scores(db, rid)
    for p in m["panels"]:
        assert (p["xlabel"], p["ylabel"]) == ("chemistry", "physics")
        assert [(q["a"], q["b"]) for q in p["lines"][0]["points"]] == \
            [(d["chemistry"], d["physics"]) for _, d in sorted(stored[p["student"]].items())]


def test_a_gate_record_of_a_student_without_a_row_is_drawn_after_the_others():
    from app.web.peer_charts import delta_chart

    gate = {"round": 1, "delta": 0.1, "tau": 0.2, "decision": "tutor", "source": "auto", "delta_se": None}
    chart = delta_chart([{**gate, "id": 1, "student": "ghost"}, {**gate, "id": 2, "student": "chem"}],
                        [{"name": "chem"}, {"name": "phys"}])
    assert [(s["student"], len(s["points"])) for s in chart["series"]] == [("chem", 1), ("phys", 0), ("ghost", 1)]
    assert delta_chart([], [{"name": "chem"}]) is None


# --- the compare page: shared students --------------------------------------------------------------------

def _expected_change(stored: dict, student: str, domain: str) -> float | None:
    rounds = {r: d[domain] for r, d in stored.get(student, {}).items() if domain in d}
    if 0 not in rounds or max(rounds) == 0:
        return None
    return rounds[max(rounds)] - rounds[0]


def test_compare_shows_each_shared_students_change_beside_the_trio(db):
    pair_cp = seed_peers(db, students=("chem", "phys"), domains=DOMAINS3[:2], name="chem-phys", salt=3)
    trio = seed_peers(db, name="trio")
    pair_pb = seed_peers(db, students=("phys", "bio"), domains=DOMAINS3[1:], name="phys-bio", salt=7,
                         missing={("bio", "biology", 2), ("bio", "biology", 1)})
    other = seed_peers(db, students=("chem", "bio"), domains=("chemistry", "biology"), name="other chem",
                       models=("tiny:qwen2", "tiny:llama"), salt=9)   # chem on another model: another student
    order = [pair_cp, trio, pair_pb, other]
    data = presenters.compare(run_views.compare_data(db, order))
    t = data["peers"]
    assert t["reference"] == trio and [r["id"] for r in t["runs"]] == [trio, pair_cp, pair_pb, other]
    assert [r["reference"] for r in t["runs"]] == [True, False, False, False]
    assert [(s["name"], s["model"], s["strong_domain"]) for s in t["students"]] == [
        ("chem", "tiny:llama", "chemistry"), ("phys", "tiny:qwen2", "physics"), ("bio", "tiny:llama", "biology")]
    assert [(s["name"], s["model"]) for s in t["not_shared"]] == [("chem", "tiny:qwen2")]
    stored = {rid: stored_scores(db, rid) for rid in order}
    domains = {trio: DOMAINS3, pair_cp: DOMAINS3[:2], pair_pb: DOMAINS3[1:], other: ("chemistry", "biology")}
    holds = {trio: TRIO, pair_cp: ("chem", "phys"), pair_pb: ("phys", "bio"), other: ("bio",)}
    states = set()
    for st in t["students"]:
        assert [r["domain"] for r in st["rows"]] == list(DOMAINS3)
        for row in st["rows"]:
            ref_change = _expected_change(stored[trio], st["name"], row["domain"])
            for cell in row["cells"]:
                rid = cell["run_id"]
                held = st["name"] in holds[rid] and row["domain"] in domains[rid]
                want = _expected_change(stored[rid], st["name"], row["domain"]) if held else None
                state = ("not_in_run" if st["name"] not in holds[rid] else
                         "not_evaluated" if row["domain"] not in domains[rid] else
                         "measured" if want is not None else "pending")
                states.add(state)
                assert (cell["state"], cell["change"]) == (state, want), (st["name"], row["domain"], rid)
                if state != "measured":
                    assert cell["text"] == "absent" and cell["gap_text"] is None   # never a zero
                elif rid != trio:
                    assert cell["gap"] == pytest.approx(ref_change - want)
    assert states == {"measured", "not_in_run", "not_evaluated", "pending"}
    # the Pareto panels: one per student position of the largest run; a line per run holding one there
    assert [len(p["lines"]) for p in data["pareto"]] == [4, 4, 1]


def test_compare_page_renders_the_shared_table(web):
    trio = seed_peers(web.sessions)
    pair = seed_peers(web.sessions, students=("chem", "phys"), domains=DOMAINS3[:2], name="pair", salt=3)
    pair2 = seed_peers(web.sessions, students=("phys", "bio"), domains=DOMAINS3[1:], name="pair 2", salt=1)
    html = web.get(f"/compare?runs={pair},{trio},{pair2}").text
    assert 'id="peers"' in html and html.count('<tr data-student="') == 9   # 3 students x 3 domains
    assert html.count('data-state="not_in_run"') == 6 and html.count('data-state="not_evaluated"') == 4
    assert html.count('data-state="measured"') == 9 + 4 + 4
    gaps = re.findall(rf'">#{trio} − #({pair}|{pair2}): ([+-]\d\.\d{{3}}|0\.000)<', html)
    assert html.count('class="peer-gap"') == len(gaps) == 8   # the trio's change minus each pair's
    alone = web.get(f"/compare?runs={trio}").text
    assert "share no student" in alone and "In one run only: chem" in alone
