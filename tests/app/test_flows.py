"""The tutoring-flow matrix (``app.services.flows``, ``GET /api/v1/runs/{id}/flows``) on SQLite and PostgreSQL:
runs recorded through the worker's recorder (``seed.seed_events``), the matrix checked against counts taken
in plain Python from the stored exchange, break-probe and evaluation rows; its links list the exchanges
it counts; its GROUP BY reads the covering index."""

from __future__ import annotations

import itertools
import math

import pytest
from sqlalchemy import select, text

from app.db import session_factory, session_scope
from app.models import BreakSample, EvalResult, Exchange
from app.services import flows
from opcod_core import events as ev
from opcod_core.breakrate import break_counts
from seed import seed_events

import api_seed

DOMAINS = ("chemistry", "physics")
CATEGORIES = ("kept", "no_match", None, "kept", "empty", "kept", "all_generic")  # None: no feedback


def accuracy_of(student: str, domain: str, round_: int) -> float:
    """A test accuracy that differs per student, domain and round (exact in binary: sums compare exactly)."""
    return (len(student) * 3 + len(domain) + 5 * round_ * (1 + len(student) % 3)) % 16 / 16


def flow_events(students: tuple[str, ...], *, rounds: int = 2, per_step: int = 8, skip=frozenset(),
                silent=frozenset(), missing_evals=frozenset()) -> list[ev.Event]:
    """Every ordered pair of students (but ``skip``) tutors once per round on both domains; ``silent``
    (tutor, domain) pairs write no feedback; every kept correct exchange is probed; a human edit on every
    other step; one probe of an exchange that is not stored; test evaluations per round (but
    ``missing_evals``) and validation ones that must not count."""
    out: list[ev.Event] = []
    g = itertools.count()
    pairs = [(t, u) for t in students for u in students if t != u and (t, u) not in skip]
    for r in range(1, rounds + 1):
        for d, (tutor, tutee) in enumerate(pairs):
            gs = next(g)
            pos = {"round": r, "direction": d + 1, "step": 0, "global_step": gs, "tutee": tutee, "tutor": tutor}
            for i in range(per_step):
                out += _exchange(pos, i, gs, silent)
            if gs % 2 == 0:
                first = f"r{r}-{tutor}-{tutee}-0"
                out.append(_make_exchange(pos, f"{first}-human", DOMAINS[0], "kept", True, human=True,
                                          origin_key=first))
            if gs == 0:
                out.append(_probe(pos, "not-stored", DOMAINS[0], True, False))
            out.append(ev.StepEvent(**pos, loss=0.25, metrics={}))
        out += [ev.EvalEvent(round=r, student=st, domain=dom, split="validation", k=2, accuracy=0.99, n_items=4)
                for st in students for dom in DOMAINS]
    out += [ev.EvalEvent(round=r, student=st, domain=dom, k=2, accuracy=accuracy_of(st, dom, r), n_items=16)
            for r in range(rounds + 1) for st in students for dom in DOMAINS if (st, dom, r) not in missing_evals]
    return out


def _exchange(pos: dict, i: int, gs: int, silent) -> list[ev.Event]:
    domain = DOMAINS[i % 2]
    v = i + 3 * gs
    category = None if (pos["tutor"], domain) in silent else CATEGORIES[v % len(CATEGORIES)]
    correct = v % 3 != 1
    key = f"r{pos['round']}-{pos['tutor']}-{pos['tutee']}-{i}"
    out: list[ev.Event] = [_make_exchange(pos, key, domain, category, correct)]
    if category == "kept" and correct:
        out.append(_probe(pos, key, domain, v % 4 != 0, v % 5 != 0))
    return out


def _make_exchange(pos: dict, key: str, domain: str, category: str | None, correct: bool, human: bool = False,
                   origin_key: str | None = None) -> ev.ExchangeEvent:
    has_f = category is not None
    return ev.ExchangeEvent(
        **pos, key=key, domain=domain, prompt_id=f"{domain}-{key}", question=f"A {domain} question on entropy?",
        choices=["one", "two"], labels=["A", "B"], gold="B", rollout_text="Answer: B", token_ids=[1, 2],
        answer="B" if correct else "A", correct=correct,
        feedback_raw="<concept>entropy</concept> hint" if has_f else None, concept="entropy" if has_f else None,
        category=category, feedback_sanitised="hint" if has_f else None,
        feedback_used="hint" if category == "kept" else None,
        feedback_source=("human" if human else "model") if has_f else None,
        context_used="s+f" if category == "kept" else "s", tokens=["a", "b"], divergence=[0.5, 0.25],
        student_logprob=[-0.5, -1.0], divergence_s_only=[0.25, 0.25], loss=0.375, origin_key=origin_key)


def _probe(pos: dict, key: str, domain: str, right_without: bool, right_with: bool) -> ev.BreakEvent:
    return ev.BreakEvent(**pos, exchange_key=key, domain=domain, tutor_cognizant=True, difficulty="easy",
                         context="s+f", baseline="s", correct_with_f=right_with, correct_without_f=right_without,
                         eligible=right_without, broken=right_without and not right_with)


# --- the reference: plain Python over the stored rows ----------------------------------------------------

def expected_cells(db, run_id: int) -> tuple[dict, int]:
    """(tutor, tutee, domain) -> the cell's numbers, and the probes of exchanges not stored."""
    with session_scope(db) as s:
        exchanges = s.execute(select(Exchange.key, Exchange.tutor, Exchange.tutee, Exchange.domain, Exchange.round,
                                     Exchange.category, Exchange.human_edited).where(Exchange.run_id == run_id)).all()
        probes = [{"tutor": b.tutor, "tutee": b.tutee, "key": b.exchange_key, "correct_without_f": b.correct_without_f,
                   "broken": b.broken} for b in s.scalars(select(BreakSample).where(BreakSample.run_id == run_id))]
        acc = {(e.student, e.domain, e.round): e.accuracy for e in s.scalars(
            select(EvalResult).where(EvalResult.run_id == run_id, EvalResult.split == "test"))}
    domain_of = {x.key: x.domain for x in exchanges}
    cells: dict = {}
    for x in exchanges:
        c = cells.setdefault((x.tutor, x.tutee, x.domain), {"rows": [], "probes": []})
        c["rows"].append(x)
    for p in probes:
        if p["key"] in domain_of:
            key = (p["tutor"], p["tutee"], domain_of[p["key"]])
            cells.setdefault(key, {"rows": [], "probes": []})["probes"].append(p)
    out = {key: _expected(key, c["rows"], c["probes"], acc) for key, c in cells.items()}
    return out, sum(p["key"] not in domain_of for p in probes)


def _expected(key, rows, probes, acc) -> dict:
    _tutor, tutee, domain = key
    model = [x for x in rows if not x.human_edited]
    feedback = [x for x in model if x.category is not None]
    kept = [x for x in feedback if x.category == "kept"]
    b = break_counts(probes)
    rounds = sorted({x.round for x in feedback})
    measured = [r for r in rounds if (tutee, domain, r) in acc and (tutee, domain, r - 1) in acc]
    return {"exchanges": len(rows), "feedback": len(feedback), "kept": len(kept),
            "kept_rate": len(kept) / len(feedback) if feedback else None,
            "human_edited": len(rows) - len(model), "probes": b["samples"], "opportunities": b["eligible"],
            "breaks": b["broken"], "break_rate": b["rate"], "rounds": rounds, "accuracy_rounds": measured,
            "accuracy_change": sum(acc[(tutee, domain, r)] - acc[(tutee, domain, r - 1)] for r in measured)
            if measured else None}


EMPTY = {"exchanges": 0, "feedback": 0, "kept": 0, "kept_rate": None, "human_edited": 0, "probes": 0,
         "opportunities": 0, "breaks": 0, "break_rate": None, "rounds": [], "accuracy_rounds": [],
         "accuracy_change": None}


def cells_of(matrix: dict) -> dict:
    return {(row["tutor"], cell["tutee"], d["domain"]): d for row in matrix["rows"] for cell in row["cells"]
            for d in cell["domains"]}


def check_against_rows(db, run_id: int, matrix: dict) -> dict:
    """Every cell of ``matrix`` equals the plain-Python count (cells without rows: all zero)."""
    expected, unattributed = expected_cells(db, run_id)
    got = cells_of(matrix)
    assert set(expected) <= set(got), set(expected) - set(got)
    for key, cell in got.items():
        want = expected.get(key, EMPTY)
        for name, value in want.items():
            assert cell[name] == value, (key, name, cell[name], value)
    assert matrix["unattributed_probes"] == unattributed
    return got


@pytest.fixture
def db(engine):
    return session_factory(engine)


def test_two_students_match_the_stored_rows(db):
    seeded = seed_events(db, flow_events(("chem", "phys"), silent={("phys", "physics")},
                                         missing_evals={("phys", "chemistry", 2)}), name="two")
    seed_events(db, flow_events(("chem", "phys"), rounds=1), name="other")  # another run's rows never leak in
    matrix = flows.flows(db, seeded.run_id).model_dump()
    assert (matrix["students"], matrix["domains"], matrix["split"]) == (["chem", "phys"], list(DOMAINS), "test")
    assert [(r["tutor"], [c["tutee"] for c in r["cells"]]) for r in matrix["rows"]] == [("chem", ["phys"]),
                                                                                      ("phys", ["chem"])]
    cells = check_against_rows(db, seeded.run_id, matrix)
    assert matrix["unattributed_probes"] == 1
    silent = cells[("phys", "chem", "physics")]   # exchanges, but no feedback
    assert silent["exchanges"] > 0 and silent["feedback"] == silent["kept"] == silent["probes"] == 0
    assert silent["kept_rate"] is None and silent["break_rate"] is None
    assert silent["rounds"] == [] and silent["accuracy_change"] is None
    taught = cells[("phys", "chem", "chemistry")]
    assert taught["rounds"] == taught["accuracy_rounds"] == [1, 2]   # telescopes: after round 2 - initial
    assert math.isclose(taught["accuracy_change"],
                        accuracy_of("chem", "chemistry", 2) - accuracy_of("chem", "chemistry", 0))
    partial = cells[("chem", "phys", "chemistry")]   # the evaluation after round 2 is missing
    assert partial["rounds"] == [1, 2] and partial["accuracy_rounds"] == [1]
    assert sum(c["probes"] for c in cells.values()) > 0 and sum(c["breaks"] for c in cells.values()) > 0
    assert any(c["human_edited"] for c in cells.values())


def test_three_students(db):
    students = ("chem", "phys", "bio")
    seeded = seed_events(db, flow_events(students, skip={("bio", "chem")}, silent={("bio", "chemistry")}),
                         name="three", students=students)
    matrix = flows.flows(db, seeded.run_id).model_dump()
    assert matrix["students"] == list(students)
    assert [(r["tutor"], [c["tutee"] for c in r["cells"]]) for r in matrix["rows"]] == [
        ("chem", ["phys", "bio"]), ("phys", ["chem", "bio"]), ("bio", ["chem", "phys"])]
    cells = check_against_rows(db, seeded.run_id, matrix)
    assert all(cells[("bio", "chem", d)] == {**cells[("bio", "chem", d)], **EMPTY} for d in DOMAINS)  # never paired
    assert cells[("bio", "phys", "chemistry")]["feedback"] == 0 and cells[("bio", "phys", "physics")]["kept"] > 0
    assert cells[("phys", "bio", "physics")]["rounds"] == [1, 2]


def test_links_list_the_counted_exchanges(db_url, tmp_path):
    client, db = api_seed.open_api(db_url, tmp_path)
    with client:
        seeded = seed_events(db, flow_events(("chem", "phys", "bio")), name="links", students=("chem", "phys", "bio"))
        r = client.get(f"/api/v1/runs/{seeded.run_id}/flows")
        assert r.status_code == 200, r.text
        matrix = r.json()
        assert matrix == flows.flows(db, seeded.run_id).model_dump(mode="json")
        for (tutor, tutee, domain), cell in cells_of(matrix).items():
            listed = client.get(cell["exchanges_url"] + "&limit=500").json()["items"]
            assert len(listed) == cell["exchanges"]
            assert {(x["tutor"], x["tutee"], x["domain"]) for x in listed} == {(tutor, tutee, domain)}
            kept = client.get(cell["kept_url"] + "&limit=500").json()["items"]
            assert len(kept) == cell["kept"]
            assert all(x["category"] == "kept" and not x["human_edited"] for x in kept)


@pytest.mark.parametrize("run_id", [987654, 2**40])
def test_unknown_run_is_404(api, run_id):
    client, db = api
    r = client.get(f"/api/v1/runs/{run_id}/flows")
    assert r.status_code == 404, r.text
    assert r.json() == {"error": {"message": f"run {run_id} not found", "fields": []}}


def test_a_run_without_exchanges(api):
    client, db = api
    seeded = seed_events(db, [], name="empty")
    r = client.get(f"/api/v1/runs/{seeded.run_id}/flows")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["students"] == ["chem", "phys"] and body["unattributed_probes"] == 0
    assert all(d == {**d, **EMPTY} for d in cells_of(body).values()) and len(cells_of(body)) == 4


def test_group_by_reads_the_covering_index(engine, db):
    """The exchange counts are read from ``ix_exchange_run_id_flows`` alone and grouped in its order."""
    ours = seed_events(db, flow_events(("chem", "phys"), rounds=1), name="ours")
    other = seed_events(db, flow_events(("chem", "phys"), rounds=1), name="bulk")
    with session_scope(db) as s:
        base = s.scalars(select(Exchange).where(Exchange.run_id == other.run_id).limit(1)).one()
        cols = {c: getattr(base, c) for c in ("step_id", "rollout_id", "global_step", "context_used", "skipped",
                                              "direction")}
        s.execute(Exchange.__table__.insert(), [
            {**cols, "run_id": other.run_id, "key": f"bulk-{i}", "round": 1 + i % 3, "tutee": "phys", "tutor": "chem",
             "domain": DOMAINS[i % 2], "correct": False, "category": "kept", "human_edited": False}
            for i in range(3000)])
    sql = str(flows.exchange_counts_query(ours.run_id).compile(engine, compile_kwargs={"literal_binds": True}))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE" if engine.dialect.name == "postgresql" else "ANALYZE"))
        if engine.dialect.name == "sqlite":
            plan = " | ".join(str(r[-1]) for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))
            assert "USING COVERING INDEX ix_exchange_run_id_flows" in plan and "TEMP B-TREE" not in plan, plan
        else:
            plan = " | ".join(r[0] for r in conn.exec_driver_sql(f"EXPLAIN {sql}"))
            assert "Index Only Scan using ix_exchange_run_id_flows" in plan and "Sort" not in plan, plan
