"""Tutor trust and every tutor's feedback in the store (issue 17), on SQLite and PostgreSQL: synthetic trainer
events (``trust_events``) written through the worker's real recorder; the rows it stores (trust changes and
their event rows, one feedback row per tutor with the shadow ones marked, the exchange's route, the probes'
domain and shadow flag), the export that gives the events back, ``GET /runs/{id}/trust`` against counts
taken in plain Python from the stored rows, the exchange detail, and a fresh start that wipes it all."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from app.db import session_factory, session_scope
from app.exchange_events import joined_used
from app.models import BreakSample, Event, Exchange, Feedback, Override, Rollout, Run, TrustChange
from app.services import trust as trust_service
from app.worker.recorder import Recorder
from opcod_core import events as ev
from opcod_core.config import preset
from opcod_core.trust import wilson_interval
from seed import _on_disk, _start, seed_events
from trust_events import AUTO_REASON, DOMAINS, STEPS, STUDENTS, held, trust_events

V1 = "/api/v1"


@pytest.fixture
def db(engine):
    return session_factory(engine)


def _seed(db, name="trust"):
    events = trust_events()
    return events, seed_events(db, events, name=name, students=STUDENTS, domains=DOMAINS)


def test_the_recorder_stores_trust_changes_every_tutors_feedback_and_shadow_probes(db):
    events, seeded = _seed(db)
    _seed(db, name="other")   # another run's rows never mix in
    run_id = seeded.run_id
    by_key = {e.key: e for e in events if isinstance(e, ev.ExchangeEvent)}
    with db() as s:
        changes = s.scalars(select(TrustChange).where(TrustChange.run_id == run_id).order_by(TrustChange.id)).all()
        want = [e for e in events if isinstance(e, ev.TrustEvent)]
        assert [(c.tutor, c.action, c.source, c.step, c.round, c.reason, c.domain, c.override_id) for c in changes] == [
            (e.tutor, e.action, e.source, e.step, e.round, e.reason, e.domain,
             int(e.override_id) if e.override_id else None) for e in want]
        trust_rows = s.scalars(select(Event).where(Event.run_id == run_id, Event.type == "trust")
                               .order_by(Event.id)).all()
        assert [r.ref_id for r in trust_rows] == [c.id for c in changes]
        assert [(r.payload["tutor"], r.payload["action"], r.payload["step"]) for r in trust_rows] == [
            (c.tutor, c.action, c.step) for c in changes]
        # the event rows follow the trainer's order: the automatic quarantine after step 1's step row
        order = [r.type for r in s.scalars(select(Event).where(Event.run_id == run_id, Event.type.in_(
            ("step", "trust"))).order_by(Event.id))]
        assert order[:3] == ["step", "step", "trust"]

        exchanges = s.scalars(select(Exchange).where(Exchange.run_id == run_id)).all()
        assert {x.key for x in exchanges} == set(by_key)
        shadow_rows = 0
        for x in exchanges:
            e = by_key[x.key]
            rows = s.scalars(select(Feedback).where(Feedback.rollout_id == x.rollout_id).order_by(Feedback.id)).all()
            assert (x.tutors, x.quarantined, x.route_reason) == (e.tutors, e.quarantined, e.route_reason)
            if e.feedbacks is None:        # two-peer shape: one row, as always
                assert len(rows) == 1 and rows[0].id == x.feedback_id and not rows[0].shadow
                assert (rows[0].tutor, rows[0].used_text) == (e.tutor, e.feedback_used)
                continue
            assert [(f.tutor, f.shadow, f.raw, f.category, f.sanitised, f.poisoned) for f in rows] == [
                (r["tutor"], r["quarantined"], r["raw"], r["category"], r["sanitised"], bool(r.get("poisoned")))
                for r in e.feedbacks]
            if not e.feedbacks:
                assert x.feedback_id is None and rows == []
                continue
            primary = s.get(Feedback, x.feedback_id)
            assert primary.id == rows[0].id and primary.tutor == e.tutor == e.feedbacks[0]["tutor"]
            for f, r in zip(rows, e.feedbacks, strict=True):       # each row its own tutor's part of f
                assert f.used_text == r["used"]
            assert joined_used(e.tutors, rows) == e.feedback_used      # the f the teacher saw, from the rows
            for f, r in zip(rows[1:], e.feedbacks[1:], strict=True):
                assert f.used_text == r["used"]
                assert not f.shadow or f.used_text is None        # shadow feedback is never used
            shadow_rows += sum(f.shadow for f in rows)
        assert shadow_rows == sum(r["quarantined"] for e in by_key.values() for r in e.feedbacks or ())
        assert shadow_rows > 0
        poisoned = s.scalars(select(Feedback.tutor).join(Rollout).where(Rollout.run_id == run_id,
                                                                         Feedback.poisoned.is_(True))).all()
        assert poisoned and set(poisoned) == {STUDENTS[0]}     # the fault's marks, on the poisoned tutor's rows
        assert any(x.tutors == [] and x.feedback_id is None for x in exchanges)   # a question without a tutor

        probes = s.scalars(select(BreakSample).where(BreakSample.run_id == run_id).order_by(BreakSample.id)).all()
        want = [e for e in events if isinstance(e, ev.BreakEvent)]
        assert [(b.exchange_key, b.tutor, b.domain, b.shadow, b.broken) for b in probes] == [
            (e.exchange_key, e.tutor, e.domain, bool(e.shadow), e.broken) for e in want]
        assert any(b.shadow for b in probes) and not all(b.shadow for b in probes)


def test_the_export_gives_the_trainers_events_back(api):
    """Every exchange line is the event the trainer reported (N-peer fields and every tutor's feedback
    included; two-peer lines without them), then one line per trust change; Parquet carries the same
    trust changes in its schema metadata, the archive the trust read beside the exchange lines."""
    import io
    import zipfile

    import pyarrow.parquet as pq

    client, db = api
    events, seeded = _seed(db)
    r = client.get(f"{V1}/runs/{seeded.run_id}/export", params={"format": "jsonl"})
    assert r.status_code == 200, r.text
    lines = [json.loads(line) for line in r.text.splitlines()]
    identity = ("id", "run_id", "origin_exchange_id", "created_at")
    exchanges = [{k: v for k, v in x.items() if k not in identity} for x in lines if x["type"] == "exchange"]
    assert exchanges == [e.to_dict() for e in events if isinstance(e, ev.ExchangeEvent)]
    assert any(sum(bool(f["used"]) for f in x.get("feedbacks", [])) == 2 for x in exchanges)   # joined f
    assert any(x.get("feedbacks") and x["feedbacks"][0]["used"] is None and x["feedback_used"] for x in exchanges)
    assert any(f.get("poisoned") for x in exchanges for f in x.get("feedbacks", []))      # the fault's marks
    assert any("tutors" not in x for x in exchanges)
    trust = [x for x in lines if x["type"] == "trust"]
    assert [{k: v for k, v in x.items() if k not in identity} for x in trust] == [
        e.to_dict() for e in events if isinstance(e, ev.TrustEvent)]
    assert [x["type"] for x in lines] == ["exchange"] * len(exchanges) + ["trust"] * len(trust)
    r = client.get(f"{V1}/runs/{seeded.run_id}/export", params={"format": "parquet"})
    assert r.status_code == 200
    meta = pq.read_schema(io.BytesIO(r.content)).metadata[b"opcod.trust_changes"]
    assert json.loads(meta) == trust
    # the archive: the exchange lines, and the trust read (changes, periods, reputations) beside them
    zf = zipfile.ZipFile(io.BytesIO(client.get(f"{V1}/runs/{seeded.run_id}/export", params={"format": "zip"}).content))
    assert [json.loads(x) for x in zf.read("exchanges.jsonl").decode().splitlines()] == lines[:len(exchanges)]
    body = json.loads(zf.read("trust.json"))
    assert body == client.get(f"{V1}/runs/{seeded.run_id}/trust").json()
    assert [c["id"] for t in body["tutors"] for c in t["changes"]] != [] and sorted(
        c["id"] for t in body["tutors"] for c in t["changes"]) == sorted(x["id"] for x in trust)


# --- the trust read against the stored rows ---------------------------------------------------------------

def expected_trust(db, run_id: int, z: float) -> dict:
    """Per tutor: the cumulative points over every domain and per domain, from the probe rows in plain Python,
    and the quarantine periods replayed from the trust-change rows."""
    with db() as s:
        probes = s.scalars(select(BreakSample).where(BreakSample.run_id == run_id)).all()
        changes = s.scalars(select(TrustChange).where(TrustChange.run_id == run_id).order_by(TrustChange.id)).all()

    def series(rows):
        points = []
        for g in sorted({b.global_step for b in rows}):
            upto = [b for b in rows if b.global_step <= g]
            opp = sum(b.correct_without_f for b in upto)
            brk = sum(b.broken for b in upto)
            lo, hi = wilson_interval(brk, opp, z)
            points.append({"global_step": g, "probes": sum(b.global_step == g for b in rows), "opportunities": opp,
                           "breaks": brk, "rate": brk / opp if opp else None, "lower": lo, "upper": hi})
        return points

    out = {}
    for tutor in {b.tutor for b in probes} | {c.tutor for c in changes}:
        mine = [b for b in probes if b.tutor == tutor]
        periods, open_ = [], None
        for c in (c for c in changes if c.tutor == tutor):
            if c.action == "quarantine":
                if open_:
                    open_["to_step"] = c.step
                open_ = {"from_step": c.step, "to_step": None, "source": c.source, "reason": c.reason}
                periods.append(open_)
            elif open_:
                open_["to_step"], open_ = c.step, None
        out[tutor] = {"points": series(mine), "domains": {d: series([b for b in mine if b.domain == d])
                                                          for d in {b.domain for b in mine}},
                      "periods": periods, "shadow_probes": sum(b.shadow for b in mine)}
    return out


def test_the_trust_api_matches_the_stored_rows(api):
    client, db = api
    events, seeded = _seed(db)
    _seed(db, name="other")
    r = client.get(f"{V1}/runs/{seeded.run_id}/trust")
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["threshold"], body["z"], body["auto_quarantine"], body["students"]) == (0.5, 1.96, False, 3)
    assert body["recent"] is None and all(t["recent"] == [] for t in body["tutors"])
    assert body["last_step"] == STEPS - 1 and body["domains"] == list(DOMAINS) and body["undomained_probes"] == 0
    assert [t["tutor"] for t in body["tutors"]] == list(STUDENTS)
    want = expected_trust(db, seeded.run_id, body["z"])
    point_keys = ("global_step", "probes", "opportunities", "breaks", "rate", "lower", "upper")
    for t in body["tutors"]:
        w = want[t["tutor"]]
        assert [{k: p[k] for k in point_keys} for p in t["points"]] == w["points"], t["tutor"]
        assert {d["domain"]: [{k: p[k] for k in point_keys} for p in d["points"]] for d in t["domains"]} == w["domains"]
        assert [{k: p[k] for k in ("from_step", "to_step", "source", "reason")} for p in t["periods"]] == w["periods"]
        assert t["shadow_probes"] == w["shadow_probes"]
        last = w["points"][-1]
        assert (t["opportunities"], t["breaks"], t["lower"]) == (last["opportunities"], last["breaks"], last["lower"])
        assert t["over_threshold"] == [d for d in DOMAINS if d in w["domains"] and w["domains"][d][-1]["lower"] > 0.5]
    tutors = {t["tutor"]: t for t in body["tutors"]}
    assert [(p["from_step"], p["to_step"], p["source"], p["domain"]) for p in tutors["bio"]["periods"]] == [
        (2, 5, "auto", "physics")]
    assert tutors["bio"]["periods"][0]["reason"] == AUTO_REASON and tutors["bio"]["shadow_probes"] > 0
    (phys,) = tutors["phys"]["periods"]
    assert (phys["from_step"], phys["to_step"], phys["override_id"], phys["lift_source"]) == (3, 4, 900001, "human")
    assert not any(t["quarantined"] for t in body["tutors"]) and tutors["chem"]["periods"] == []
    assert sum(len(t["points"]) for t in body["tutors"]) > len(STUDENTS)   # a point per probed step


@pytest.mark.parametrize("window, threshold", [(2, 0.5), (5, 0.2)])
def test_the_recent_window_matches_the_last_stored_opportunities(api, window, threshold):
    """With trust.recent set, each tutor's recent window per domain is its last W opportunities since its last
    human lift (phys is lifted by a person at step 4), counted here in plain Python from the stored rows."""
    client, db = api
    _, seeded = _seed(db, name=f"recent-{window}")
    with session_scope(db) as s:
        run = s.get(Run, seeded.run_id)
        run.config = {**run.config, "trust": {**run.config.get("trust", {}), "recent": window, "threshold": threshold}}
        # a person lifted chem at step 3 (a stored trust change as the recorder writes one)
        s.add(TrustChange(run_id=seeded.run_id, tutor="chem", action="lift", source="human", step=3, round=2,
                          reason="human: checked by hand"))
        s.flush()
        probes = s.scalars(select(BreakSample).where(BreakSample.run_id == seeded.run_id)
                           .order_by(BreakSample.global_step, BreakSample.id)).all()
        lifts = {c.tutor: c.step for c in s.scalars(select(TrustChange).where(
            TrustChange.run_id == seeded.run_id, TrustChange.action == "lift", TrustChange.source == "human"))}
        want = {}
        for tutor in STUDENTS:
            for d in DOMAINS:
                kept = [b.broken for b in probes if b.tutor == tutor and b.domain == d and b.correct_without_f
                        and b.global_step >= lifts.get(tutor, 0)][-window:]
                if kept:
                    lo = wilson_interval(sum(kept), len(kept))[0]
                    want.setdefault(tutor, []).append({"domain": d, "opportunities": len(kept), "breaks": sum(kept),
                                                       "lower": lo, "over": lo > threshold})
    assert lifts == {"phys": 4, "chem": 3}
    body = client.get(f"{V1}/runs/{seeded.run_id}/trust").json()
    assert body["recent"] == window
    got = {t["tutor"]: [{k: r[k] for k in ("domain", "opportunities", "breaks", "lower", "over")} for r in t["recent"]]
           for t in body["tutors"] if t["recent"]}
    assert got == want and {"chem", "bio"} <= set(got)
    # chem's opportunities before its lift are left out: the window starts afresh there
    assert any(b.tutor == "chem" and b.correct_without_f and b.global_step < 3 for b in probes)
    assert all(r["opportunities"] <= window for rows in got.values() for r in rows)
    page = client.get(f"/runs/{seeded.run_id}").text
    assert f"over its last {window} opportunities there" in page
    over = [(t, r) for t, rows in want.items() for r in rows if r["over"]]
    assert bool(over) == (threshold < 0.5)          # 0.2: some recent window is over it; 0.5: none of these
    for tutor, r in over:
        assert f"{r['domain']} ({r['breaks']} of its last {r['opportunities']}, lower bound {r['lower']:.2f})" in page
    assert ("recently over the threshold on" in page) == bool(over)


def _without_lifts() -> list:
    """The trust scenario's events without any lift, automatic or human (a quarantine stays open)."""
    return [e for e in trust_events() if not (isinstance(e, ev.TrustEvent) and e.action == "lift")
            and not (isinstance(e, ev.OverrideEvent) and e.kind == "lift")]


def test_the_recent_window_without_any_human_lift(api):
    """No lift at all: every tutor's window is simply its last W opportunities."""
    client, db = api
    events = _without_lifts()
    seeded = seed_events(db, events, name="recent-unlifted", students=STUDENTS, domains=DOMAINS)
    with session_scope(db) as s:
        run = s.get(Run, seeded.run_id)
        run.config = {**run.config, "trust": {"recent": 3}}
        probes = s.scalars(select(BreakSample).where(BreakSample.run_id == seeded.run_id)
                           .order_by(BreakSample.global_step, BreakSample.id)).all()
        want = {t: {d: [b.broken for b in probes if (b.tutor, b.domain) == (t, d) and b.correct_without_f][-3:]
                    for d in DOMAINS} for t in STUDENTS}
    body = client.get(f"{V1}/runs/{seeded.run_id}/trust").json()
    got = {t["tutor"]: {r["domain"]: (r["opportunities"], r["breaks"]) for r in t["recent"]} for t in body["tutors"]}
    assert got == {t: {d: (len(k), sum(k)) for d, k in per.items() if k} for t, per in want.items()}
    assert any(got.values())


def test_an_open_quarantine_and_a_run_without_probes(api):
    client, db = api
    events = _without_lifts()
    seeded = seed_events(db, events, name="open", students=STUDENTS, domains=DOMAINS)
    body = client.get(f"{V1}/runs/{seeded.run_id}/trust").json()
    tutors = {t["tutor"]: t for t in body["tutors"]}
    assert tutors["bio"]["quarantined"] and tutors["phys"]["quarantined"] and not tutors["chem"]["quarantined"]
    assert [(p["from_step"], p["to_step"]) for p in tutors["bio"]["periods"]] == [(2, None)]
    empty = seed_events(db, [], name="empty", students=STUDENTS, domains=DOMAINS)
    body = client.get(f"{V1}/runs/{empty.run_id}/trust").json()
    assert body["last_step"] is None and [t["tutor"] for t in body["tutors"]] == list(STUDENTS)
    assert all(t["points"] == [] and t["rate"] is None and (t["lower"], t["upper"]) == (0.0, 1.0)
               for t in body["tutors"])
    r = client.get(f"{V1}/runs/987654/trust")
    assert r.status_code == 404 and r.json()["error"]["message"] == "run 987654 not found"


def test_the_exchange_detail_shows_every_tutors_feedback_and_the_route(api):
    client, db = api
    events, seeded = _seed(db)
    by_key = {e.key: e for e in events if isinstance(e, ev.ExchangeEvent)}
    with db() as s:
        ids = {x.key: x.id for x in s.scalars(select(Exchange).where(Exchange.run_id == seeded.run_id))}
    shadowed = next(k for k, e in by_key.items() if e.quarantined and e.tutors)
    two_peer = next(k for k, e in by_key.items() if e.feedbacks is None)
    two_used = next(k for k, e in by_key.items() if sum(bool(r["used"]) for r in e.feedbacks or ()) == 2)
    for key in (shadowed, two_used):
        d, e = client.get(f"{V1}/exchanges/{ids[key]}").json(), by_key[key]
        assert (d["tutors"], d["quarantined"], d["route_reason"]) == (e.tutors, e.quarantined, e.route_reason)
        assert [(f["tutor"], f["shadow"], f["used_text"]) for f in d["feedbacks"]] == [
            (r["tutor"], r["quarantined"], r["used"]) for r in e.feedbacks]    # each tutor's own part
        assert d["feedback_used"] == e.feedback_used                          # the f the teacher saw
        assert d["feedbacks"][0] == d["feedback"]
    assert "\n" in d["feedback_used"]                                         # joined from two parts
    assert any(f["shadow"] for f in client.get(f"{V1}/exchanges/{ids[shadowed]}").json()["feedbacks"])
    d = client.get(f"{V1}/exchanges/{ids[two_peer]}").json()
    assert d["tutors"] is d["quarantined"] is d["route_reason"] is None
    assert d["feedback_used"] == by_key[two_peer].feedback_used == d["feedback"]["used_text"]
    assert d["feedbacks"] == [d["feedback"]] and d["feedback"]["shadow"] is False
    poisoned = next(k for k, e in by_key.items() if any(r.get("poisoned") for r in e.feedbacks or ()))
    d = client.get(f"{V1}/exchanges/{ids[poisoned]}").json()
    assert [f["poisoned"] for f in d["feedbacks"]] == [bool(r.get("poisoned")) for r in by_key[poisoned].feedbacks]
    assert 'class="badge poisoned"' in client.get(f"/exchanges/{ids[poisoned]}").text
    assert 'class="badge poisoned"' not in client.get(f"/exchanges/{ids[two_peer]}").text
    page = client.get(f"/exchanges/{ids[shadowed]}")
    assert page.status_code == 200
    assert "quarantined: shadow" in page.text and 'id="other-feedback"' in page.text
    assert "(quarantined: [&#39;" in page.text      # the route reason, escaped


def test_a_fresh_start_wipes_the_trust_changes_and_every_feedback(db, tmp_path):
    seeded = seed_events(db, trust_events(), name="restart", students=STUDENTS, domains=DOMAINS, status="running")
    with db() as s:
        run = s.get(Run, seeded.run_id)
        worker_id, config = run.worker_id, run.config
        assert s.scalars(select(TrustChange).where(TrustChange.run_id == run.id)).first() is not None
    start = _start(preset("tiny")).model_copy(update={"config": config, "students": list(STUDENTS),
                                                      "domains": list(DOMAINS)})
    Recorder(db, seeded.run_id, worker_id, out_dir=tmp_path).on_event(start)
    with db() as s:
        for model in (TrustChange, BreakSample, Exchange, Rollout):
            assert s.scalars(select(model).where(model.run_id == seeded.run_id)).first() is None, model
        assert s.scalars(select(Feedback)).first() is None
        assert s.scalars(select(Event).where(Event.run_id == seeded.run_id, Event.type == "trust")).first() is None


def test_a_resume_undoes_the_trust_changes_made_after_its_checkpoint(db, tmp_path):
    """Exact resume: the trust changes, shadow feedback and probes recorded after the checkpoint the trainer
    restores are deleted with the rest of that work, the human quarantine and lift go back to pending (they
    are handed to the trainer again), and the trust read shows what held at the checkpoint."""
    seeded = seed_events(db, [], name="resume", students=STUDENTS, domains=DOMAINS, status="running")
    rid = seeded.run_id
    with session_scope(db) as s:
        worker_id = s.get(Run, rid).worker_id
        rows = [Override(run_id=rid, kind=k, payload={"student": "phys"}, author="ada") for k in ("quarantine", "lift")]
        s.add_all(rows)
        s.flush()
        quarantine_id, lift_id = (o.id for o in rows)
    events = trust_events(quarantine_id=str(quarantine_id), lift_id=str(lift_id))
    cut = 1 + next(i for i, e in enumerate(events) if isinstance(e, ev.StepEvent) and e.global_step == 2)
    ck = _on_disk(ev.CheckpointEvent(tag="step-000003", path="", next_task=4, after=["step", 1, 3, 0],
                                     events_before=cut + 1), tmp_path)
    rec = Recorder(db, rid, worker_id, out_dir=tmp_path)
    for e in [*events[:cut], ck, *events[cut:]]:
        rec.on_event(e)
    rec.flush()
    with db() as s:
        assert len(s.scalars(select(TrustChange).where(TrustChange.run_id == rid)).all()) == 4
        assert {s.get(Override, i).status for i in (quarantine_id, lift_id)} == {"applied"}
        assert s.scalars(select(Feedback).where(Feedback.shadow.is_(True))).first() is not None
    Recorder(db, rid, worker_id, out_dir=tmp_path).on_event(ev.ResumeEvent(next_task=4))
    with db() as s:
        kept = s.scalars(select(TrustChange).where(TrustChange.run_id == rid)).all()
        assert [(c.tutor, c.action, c.step) for c in kept] == [("bio", "quarantine", 2)]
        assert [e.ref_id for e in s.scalars(select(Event).where(Event.run_id == rid, Event.type == "trust"))] == [
            kept[0].id]
        assert {s.get(Override, i).status for i in (quarantine_id, lift_id)} == {"pending"}
        assert max(s.scalars(select(Exchange.global_step).where(Exchange.run_id == rid))) == 2
        rollouts = set(s.scalars(select(Rollout.id).where(Rollout.run_id == rid)))
        feedback = s.scalars(select(Feedback)).all()    # (this test's database holds this run only)
        assert feedback and {f.rollout_id for f in feedback} <= rollouts
        assert not any(f.shadow for f in feedback)      # the shadow feedback of steps 3-4 went with them
        assert max(s.scalars(select(BreakSample.global_step).where(BreakSample.run_id == rid))) == 2
    bio = next(t for t in trust_service.trust(db, rid).tutors if t.tutor == "bio")
    assert [(p.from_step, p.to_step) for p in bio.periods] == [(2, None)] and bio.quarantined


def test_held_follows_the_trust_events():
    """The fixture's own consistency: exchanges route around exactly the tutors the trust events hold."""
    events = trust_events()
    for e in events:
        if isinstance(e, ev.ExchangeEvent) and e.tutors is not None and e.feedbacks:
            assert set(e.quarantined) == held(e.global_step) - {e.tutee}
            assert not set(e.tutors) & held(e.global_step)
