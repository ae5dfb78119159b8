"""The tutoring-flow matrix (``app.services.flows``, ``GET /api/v1/runs/{id}/flows``) on SQLite and PostgreSQL:
runs recorded through the worker's recorder (``seed.seed_events``), the matrix checked against counts taken
in plain Python from the stored rows: with two peers from the exchange rows (the matrix's definition before
N peers, which two-peer runs keep) and from the feedback rows (each under its own tutor, shadow rows apart),
with N peers (routing mode ``all``, a quarantined tutor writing in the shadow: ``trust_events``) from the
feedback rows; its links list the exchanges it says they do; its GROUP BYs read their indexes."""

from __future__ import annotations

import itertools
import math

import pytest
from sqlalchemy import func, select, text

from app.db import session_factory, session_scope
from app.models import BreakSample, EvalResult, Exchange, Feedback, Rollout
from app.services import flows
from app.worker.recorder import insert_ids
from opcod_core import events as ev
from opcod_core.breakrate import break_counts
from seed import seed_events
import trust_events

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


# --- the references: plain Python over the stored rows ---------------------------------------------------

def _stored(db, run_id: int):
    """The run's exchanges, feedback rows (with their exchange), probes and test accuracies."""
    with session_scope(db) as s:
        exchanges = s.execute(select(Exchange.key, Exchange.tutor, Exchange.tutee, Exchange.domain, Exchange.round,
                                     Exchange.category, Exchange.human_edited, Exchange.rollout_id,
                                     Exchange.feedback_id).where(Exchange.run_id == run_id)).all()
        by_rollout = {x.rollout_id: x for x in exchanges}
        feedback = [(f, by_rollout[f.rollout_id]) for f in s.execute(
            select(Feedback.id, Feedback.rollout_id, Feedback.tutor, Feedback.category, Feedback.shadow)
            .where(Feedback.rollout_id.in_(list(by_rollout))))] if by_rollout else []
        probes = [{"tutor": b.tutor, "tutee": b.tutee, "key": b.exchange_key, "correct_without_f": b.correct_without_f,
                   "broken": b.broken, "shadow": b.shadow}
                  for b in s.scalars(select(BreakSample).where(BreakSample.run_id == run_id))]
        acc = {(e.student, e.domain, e.round): e.accuracy for e in s.scalars(
            select(EvalResult).where(EvalResult.run_id == run_id, EvalResult.split == "test"))}
    return exchanges, feedback, probes, acc


def _cell() -> dict:
    return {"exchanges": 0, "human_edited": 0, "given": [], "shadow": 0, "probes": [], "shadow_probes": 0}


def _probes_in(cells: dict, exchanges, probes, shadow_apart: bool) -> int:
    """Each probe into its (tutor, tutee, domain of its exchange) cell; the number of probes whose exchange is
    not stored."""
    domain_of = {x.key: x.domain for x in exchanges}
    for p in probes:
        if p["key"] in domain_of:
            c = cells.setdefault((p["tutor"], p["tutee"], domain_of[p["key"]]), _cell())
            if shadow_apart and p["shadow"]:
                c["shadow_probes"] += 1
            else:
                c["probes"].append(p)
    return sum(p["key"] not in domain_of for p in probes)


def expected_cells(db, run_id: int) -> tuple[dict, int]:
    """(tutor, tutee, domain) -> the cell's numbers as the matrix counted them before N peers: each exchange
    row's category under the exchange's tutor, every probe alike (what a two-peer run still gets); and the
    probes of exchanges not stored."""
    exchanges, _feedback, probes, acc = _stored(db, run_id)
    cells: dict = {}
    for x in exchanges:
        c = cells.setdefault((x.tutor, x.tutee, x.domain), _cell())
        c["exchanges"] += 1
        c["human_edited"] += x.human_edited
        if not x.human_edited and x.category is not None:
            c["given"].append((x.round, x.category, False))
    unattributed = _probes_in(cells, exchanges, probes, shadow_apart=False)
    return {key: _expected(key, c, acc) for key, c in cells.items()}, unattributed


def expected_from_feedback_rows(db, run_id: int) -> tuple[dict, int]:
    """(tutor, tutee, domain) -> the cell's numbers counted from the stored feedback rows: each row under its
    own tutor and its exchange's tutee and domain (joined through ``rollout_id``), given when it has a category
    and is not shadow, on another tutor's exchange when it is not the exchange's ``feedback_id``; shadow rows
    and probes of shadow feedback apart; rows of human-edited exchanges left out; exchanges and human edits
    under the exchange's tutor."""
    exchanges, feedback, probes, acc = _stored(db, run_id)
    cells: dict = {}
    for x in exchanges:
        c = cells.setdefault((x.tutor, x.tutee, x.domain), _cell())
        c["exchanges"] += 1
        c["human_edited"] += x.human_edited
    for f, x in feedback:
        if x.human_edited:
            continue
        c = cells.setdefault((f.tutor, x.tutee, x.domain), _cell())
        if f.shadow:
            c["shadow"] += 1
        elif f.category is not None:
            c["given"].append((x.round, f.category, f.id != x.feedback_id))
    unattributed = _probes_in(cells, exchanges, probes, shadow_apart=True)
    return {key: _expected(key, c, acc) for key, c in cells.items()}, unattributed


def _expected(key, c: dict, acc) -> dict:
    _tutor, tutee, domain = key
    given = c["given"]
    kept = [g for g in given if g[1] == "kept"]
    b = break_counts(c["probes"])
    rounds = sorted({g[0] for g in given})
    measured = [r for r in rounds if (tutee, domain, r) in acc and (tutee, domain, r - 1) in acc]
    return {"exchanges": c["exchanges"], "feedback": len(given), "kept": len(kept),
            "kept_rate": len(kept) / len(given) if given else None,
            "peer_feedback": sum(g[2] for g in given), "peer_kept": sum(g[2] for g in kept), "shadow": c["shadow"],
            "human_edited": c["human_edited"], "probes": b["samples"], "opportunities": b["eligible"],
            "breaks": b["broken"], "break_rate": b["rate"], "shadow_probes": c["shadow_probes"], "rounds": rounds,
            "accuracy_rounds": measured,
            "accuracy_change": sum(acc[(tutee, domain, r)] - acc[(tutee, domain, r - 1)] for r in measured)
            if measured else None}


EMPTY = {"exchanges": 0, "feedback": 0, "kept": 0, "kept_rate": None, "peer_feedback": 0, "peer_kept": 0,
         "shadow": 0, "human_edited": 0, "probes": 0, "opportunities": 0, "breaks": 0, "break_rate": None,
         "shadow_probes": 0, "rounds": [], "accuracy_rounds": [], "accuracy_change": None}


def cells_of(matrix: dict) -> dict:
    return {(row["tutor"], cell["tutee"], d["domain"]): d for row in matrix["rows"] for cell in row["cells"]
            for d in cell["domains"]}


def check_against_rows(db, run_id: int, matrix: dict, reference=expected_from_feedback_rows) -> dict:
    """Every cell of ``matrix`` equals the plain-Python count (cells without rows: all zero)."""
    expected, unattributed = reference(db, run_id)
    got = cells_of(matrix)
    assert set(expected) <= set(got), set(expected) - set(got)
    for key, cell in got.items():
        want = expected.get(key, EMPTY)
        assert set(want) == set(EMPTY)
        for name, value in want.items():
            assert cell[name] == value, (key, name, cell[name], value)
    assert matrix["unattributed_probes"] == unattributed
    return got


def check_two_peers(db, run_id: int, matrix: dict) -> dict:
    """A run without N-peer feedback records (one feedback row per exchange, as two peers store them): the
    matrix is what it was before N peers, and what the feedback rows say."""
    check_against_rows(db, run_id, matrix, reference=expected_cells)
    return check_against_rows(db, run_id, matrix)


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
    cells = check_two_peers(db, seeded.run_id, matrix)
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
    cells = check_two_peers(db, seeded.run_id, matrix)
    assert all(cells[("bio", "chem", d)] == {**cells[("bio", "chem", d)], **EMPTY} for d in DOMAINS)  # never paired
    assert cells[("bio", "phys", "chemistry")]["feedback"] == 0 and cells[("bio", "phys", "physics")]["kept"] > 0
    assert cells[("phys", "bio", "physics")]["rounds"] == [1, 2]


def n_peer_events(students: tuple[str, str, str] = trust_events.STUDENTS) -> list[ev.Event]:
    """``trust_events``' three-student run (routing mode ``all``: two tutors' feedback on the same rollouts;
    bio quarantined in steps 2-4 and phys in step 3 writing in the shadow, on chem's questions of step 3 the
    only writers; with ``students``' names in that order) with a person's edit of a routed exchange, recorded
    at step 3."""
    events = trust_events.trust_events(students)
    origin = next(e for e in events if isinstance(e, ev.ExchangeEvent) and e.tutors and len(e.tutors) == 2)
    at = next(i for i, e in enumerate(events) if isinstance(e, ev.StepEvent) and e.global_step == 3)
    pos = events[at].model_dump(include={"round", "direction", "step", "global_step", "tutee"})
    assert pos["tutee"] == origin.tutee
    human = origin.model_copy(update={
        **pos, "key": f"{origin.key}-human", "origin_key": origin.key, "feedback_source": "human", "approval": "edit",
        "category": "kept", "feedback_used": "an edited hint", "feedback_sanitised": "an edited hint",
        "tutors": None, "quarantined": None, "feedbacks": None, "route_reason": None})
    return [*events[:at], human, *events[at:]]


def test_every_tutors_feedback_rows_count_under_their_own_tutor(db):
    """Routing mode ``all`` and shadow feedback: each stored feedback row counts under its own tutor, shadow
    rows and probes of shadow feedback apart (never in feedback, kept or break), human edits as with two."""
    seeded = seed_events(db, n_peer_events(), name="n peers", students=trust_events.STUDENTS,
                         domains=trust_events.DOMAINS)
    seed_events(db, flow_events(("chem", "phys"), rounds=1), name="other")   # another run's rows never leak in
    matrix = flows.flows(db, seeded.run_id).model_dump()
    assert matrix["students"] == list(trust_events.STUDENTS)
    cells = check_against_rows(db, seeded.run_id, matrix)
    # the counts the cells split, taken straight from the stored rows
    with session_scope(db) as s:
        x = select(Exchange.rollout_id, Exchange.feedback_id, Exchange.human_edited).where(
            Exchange.run_id == seeded.run_id).subquery()
        rows = s.execute(select(Feedback.id, Feedback.category, Feedback.shadow, x.c.feedback_id, x.c.human_edited)
                         .join(x, x.c.rollout_id == Feedback.rollout_id)).all()
        probes = s.execute(select(BreakSample.shadow).where(BreakSample.run_id == seeded.run_id)).scalars().all()
        exchanges = s.scalar(select(func.count()).select_from(Exchange).where(Exchange.run_id == seeded.run_id))
    model = [r for r in rows if not r.human_edited]
    given = [r for r in model if not r.shadow and r.category is not None]
    total = {k: sum(c[k] for c in cells.values()) for k in EMPTY if isinstance(EMPTY[k], int)}
    assert total["feedback"] == len(given) and total["kept"] == sum(r.category == "kept" for r in given)
    assert total["peer_feedback"] == sum(r.id != r.feedback_id for r in given) > 0      # two tutors on one rollout
    assert total["shadow"] == sum(r.shadow for r in model) > 0
    assert total["shadow_probes"] == sum(probes) > 0
    assert total["probes"] == len(probes) - sum(probes) and matrix["unattributed_probes"] == 0
    assert total["human_edited"] == 1 and total["exchanges"] == exchanges
    # bio is never an exchange's own tutor on chem's questions: its feedback there is all on phys's exchanges
    bio_chem = [cells[("bio", "chem", d)] for d in trust_events.DOMAINS]
    assert all(c["exchanges"] == 0 for c in bio_chem) and sum(c["feedback"] for c in bio_chem) > 0
    assert all(c["peer_feedback"] == c["feedback"] and c["peer_kept"] == c["kept"] for c in bio_chem)
    assert sum(c["shadow"] for c in bio_chem) > 0 and all(c["rounds"] == [1] for c in bio_chem if c["feedback"])
    # at step 3 only quarantined tutors wrote on chem's questions: the exchanges name phys, whose shadow
    # feedback the exchange counts alone would have taken for given feedback
    naive, _ = expected_cells(db, seeded.run_id)
    phys_chem = [(cells[("phys", "chem", d)], naive[("phys", "chem", d)]) for d in trust_events.DOMAINS]
    assert all(c["exchanges"] == n["exchanges"] for c, n in phys_chem)
    shadow = sum(c["shadow"] for c, _ in phys_chem)
    assert shadow > 0 and sum(n["feedback"] - c["feedback"] for c, n in phys_chem) == shadow
    assert sum(n["kept"] - c["kept"] for c, n in phys_chem) > 0


def test_links_list_the_counted_exchanges(db_url, tmp_path):
    """``exchanges_url`` lists the cell's exchanges; ``kept_url`` its own kept feedback: ``kept - peer_kept``
    of them, and the exchanges where only this quarantined tutor wrote and its shadow feedback was kept;
    ``feedback_url`` every exchange with the tutor's feedback, ``peer_feedback`` of them led by another."""
    client, db = api_seed.open_api(db_url, tmp_path)
    with client:
        runs = [seed_events(db, flow_events(("chem", "phys", "bio")), name="links", students=("chem", "phys", "bio")),
                seed_events(db, n_peer_events(), name="n peers", students=trust_events.STUDENTS,
                            domains=trust_events.DOMAINS)]
        with session_scope(db) as s:
            shadow_only = set(s.scalars(select(Exchange.id).join(Feedback, Feedback.id == Exchange.feedback_id)
                                        .where(Feedback.shadow.is_(True))))
        assert shadow_only
        peer_total = 0
        for seeded in runs:
            r = client.get(f"/api/v1/runs/{seeded.run_id}/flows")
            assert r.status_code == 200, r.text
            matrix = r.json()
            assert matrix == flows.flows(db, seeded.run_id).model_dump(mode="json")
            for (tutor, tutee, domain), cell in cells_of(matrix).items():
                listed = client.get(cell["exchanges_url"] + "&limit=500").json()["items"]
                assert len(listed) == cell["exchanges"]
                assert {(x["tutor"], x["tutee"], x["domain"]) for x in listed} <= {(tutor, tutee, domain)}
                kept = client.get(cell["kept_url"] + "&limit=500").json()["items"]
                assert all(x["category"] == "kept" and not x["human_edited"] for x in kept)
                assert {(x["tutor"], x["tutee"], x["domain"]) for x in kept} <= {(tutor, tutee, domain)}
                assert sum(x["id"] not in shadow_only for x in kept) == cell["kept"] - cell["peer_kept"]
                assert sum(x["id"] in shadow_only for x in kept) <= cell["shadow"]
                given = client.get(cell["feedback_url"] + "&limit=500").json()["items"]
                assert len(given) == cell["feedback"] and not any(x["human_edited"] for x in given)
                assert {(x["tutee"], x["domain"]) for x in given} <= {(tutee, domain)}
                assert sum(x["tutor"] != tutor for x in given) == cell["peer_feedback"]   # led by another tutor
                peer_total += cell["peer_feedback"]
        assert peer_total > 0     # the N-peer run lists feedback on exchanges other tutors lead


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
    """The exchange counts are read from ``ix_exchange_run_id_flows`` alone and grouped in its order; on
    SQLite the feedback rows' join reads the exchange side from that index too and finds the feedback rows
    through ``ix_feedback_rollout_id_shadow`` (no table scanned)."""
    ours = seed_events(db, flow_events(("chem", "phys"), rounds=1), name="ours")
    other = seed_events(db, flow_events(("chem", "phys"), rounds=1), name="bulk")
    with session_scope(db) as s:   # another run's 3000 exchanges, each with its rollout and feedback row
        base = s.scalars(select(Exchange).where(Exchange.run_id == other.run_id).limit(1)).one()
        rollout = s.get(Rollout, base.rollout_id)
        rollouts = insert_ids(s, Rollout, [{c: getattr(rollout, c) for c in (
            "run_id", "step_id", "student", "prompt_id", "prompt_index", "rollout_index", "text", "token_ids", "answer",
            "correct")}] * 3000)
        feedback = insert_ids(s, Feedback, [{"rollout_id": r, "tutor": "chem", "raw": "hint", "category": "kept",
                                             "redactions": [], "source": "model", "shadow": False} for r in rollouts])
        cols = {c: getattr(base, c) for c in ("step_id", "global_step", "context_used", "skipped", "direction")}
        s.execute(Exchange.__table__.insert(), [
            {**cols, "run_id": other.run_id, "key": f"bulk-{i}", "rollout_id": r, "feedback_id": f, "round": 1 + i % 3,
             "tutee": "phys", "tutor": "chem", "domain": DOMAINS[i % 2], "correct": False, "category": "kept",
             "human_edited": False}
            for i, (r, f) in enumerate(zip(rollouts, feedback, strict=True))])
    sql = str(flows.exchange_counts_query(ours.run_id).compile(engine, compile_kwargs={"literal_binds": True}))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE" if engine.dialect.name == "postgresql" else "ANALYZE"))
        if engine.dialect.name == "sqlite":
            plan = " | ".join(str(r[-1]) for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))
            assert "USING COVERING INDEX ix_exchange_run_id_flows" in plan and "TEMP B-TREE" not in plan, plan
            joined = str(flows.feedback_rows_query(ours.run_id).compile(engine, compile_kwargs={"literal_binds": True}))
            plan = [str(r[-1]) for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {joined}")]
            assert plan[:2] == ["SEARCH exchange USING COVERING INDEX ix_exchange_run_id_flows (run_id=?)",
                                "SEARCH feedback USING INDEX ix_feedback_rollout_id_shadow (rollout_id=?)"], plan
            assert not any(step.startswith("SCAN") for step in plan), plan
        else:
            plan = " | ".join(r[0] for r in conn.exec_driver_sql(f"EXPLAIN {sql}"))
            assert "Index Only Scan using ix_exchange_run_id_flows" in plan and "Sort" not in plan, plan
