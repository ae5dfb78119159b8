"""A person quarantines a tutor of a real three-student tiny run through the REST API; the worker applies it at
the next step boundary, and the store shows it: the override row applied (the audit log), a trust change by a
human naming that override, the quarantined tutor's feedback written in the shadow (stored, never used),
and the trust read with the period still open. Routing mode ``all`` asks every cognizant peer, so the
quarantined tutor is on every route but its own tutee's; its feedback is kept by construction
(``worker_support.KEPT_PREFILL``), whatever the tiny model writes."""

from __future__ import annotations

import pytest
from sqlalchemy import select

import api_seed
import worker_support as ws
from app.db import make_engine, session_factory, upgrade
from app.models import BreakSample, Event, Exchange, Feedback, Override, Run, TrustChange
from app.worker.loop import Worker
from opcod_core.config import preset

pytestmark = pytest.mark.slow

REASON = "reads <b>badly</b>"


def three_students():
    """The three specialists of tests/core/test_peers.py (the same warm-ups: cached once per session)."""
    students = [{"name": n, "model": m, "strong_domain": d, "warmup_sft_steps": 200, "warmup_domains": [d],
                 "build_seed": 70 + i}
                for i, (n, m, d) in enumerate((("chem", "tiny:llama", "chemistry"), ("phys", "tiny:qwen2", "physics"),
                                               ("bio", "tiny:llama", "biology")))]
    return preset("tiny", {
        "students": students, "data": {"domains": ["chemistry", "physics", "biology"]},
        "schedule": {"rounds": 1, "steps_per_direction": 1}, "rollout": {"n": 4}, "gating": {"mode": "always"},
        "routing": {"mode": "all"}, "tutor": {"prefill": ws.KEPT_PREFILL}, "break_rate": {"samples_per_step": 8}})


def test_a_human_quarantine_through_the_api_mutes_a_tutor_of_a_three_student_run(tmp_path, tiny_cache):
    url = f"sqlite:///{tmp_path / 'db' / 'opcod.db'}"
    upgrade(url)
    eng = make_engine(url)
    client, _ = api_seed.open_api(url, tmp_path)
    try:
        with client:
            r = client.post("/api/v1/runs", json=three_students().to_dict())
            assert r.status_code == 201, r.text
            rid = r.json()["id"]
            assert [s["name"] for s in r.json()["students"]] == ["chem", "phys", "bio"]
            r = client.post(f"/api/v1/runs/{rid}/overrides",
                            json={"kind": "quarantine", "student": "phys", "value": REASON, "author": "ada"})
            assert r.status_code == 201, r.text
            ov_id = r.json()["id"]
            assert r.json()["payload"] == {"student": "phys", "value": REASON} and r.json()["status"] == "pending"

            worker = Worker(ws.make_settings(tmp_path, url, tiny_cache), engine=eng)
            assert worker.run(once=True) == 0
            assert worker.processed == [(rid, "finished")]

            factory = session_factory(eng)
            with factory() as s:
                ov = s.get(Override, ov_id)
                assert (ov.status, ov.applied_at_step) == ("applied", 0) and ov.applied_at is not None
                (change,) = s.scalars(select(TrustChange).where(TrustChange.run_id == rid)).all()
                assert (change.tutor, change.action, change.source, change.step, change.override_id) == (
                    "phys", "quarantine", "human", 0, ov_id)
                assert REASON in change.reason
                assert s.scalars(select(Event).where(Event.run_id == rid, Event.type == "trust")).one().ref_id == change.id
                exchanges = s.scalars(select(Exchange).where(Exchange.run_id == rid)).all()
                assert exchanges and all(x.tutors is not None and "phys" not in x.tutors for x in exchanges)
                others = [x for x in exchanges if x.tutee != "phys"]
                assert others and all(x.quarantined == ["phys"] for x in others)
                shadow = s.scalars(select(Feedback).join(Exchange, Exchange.rollout_id == Feedback.rollout_id)
                                   .where(Exchange.run_id == rid, Feedback.tutor == "phys")).all()
                assert len(shadow) == len(others)            # phys wrote on every rollout it was routed to
                assert all(f.shadow and f.used_text is None for f in shadow)
                assert any(f.category == "kept" for f in shadow)  # kept, and still not used
                used = s.scalars(select(Feedback).join(Exchange, Exchange.rollout_id == Feedback.rollout_id)
                                 .where(Exchange.run_id == rid, Feedback.shadow.is_(False))).all()
                assert used and {f.tutor for f in used} <= {"chem", "bio"}   # phys tutored nobody
                probes = s.scalars(select(BreakSample).where(BreakSample.run_id == rid)).all()
                assert all(b.tutor == "phys" for b in probes if b.shadow)
                assert s.get(Run, rid).status == "finished"
            body = client.get(f"/api/v1/runs/{rid}/trust").json()
            phys = next(t for t in body["tutors"] if t["tutor"] == "phys")
            assert phys["quarantined"] and [(p["from_step"], p["to_step"], p["source"], p["override_id"])
                                            for p in phys["periods"]] == [(0, None, "human", ov_id)]
            detail = client.get(f"/api/v1/exchanges/{others[0].id}").json()
            assert [(f["tutor"], f["shadow"]) for f in detail["feedbacks"] if f["tutor"] == "phys"] == [("phys", True)]
            assert detail["quarantined"] == ["phys"] and detail["route_reason"]
            page = client.get(f"/runs/{rid}")
            assert page.status_code == 200 and 'id="trust"' in page.text and "reads &lt;b&gt;badly&lt;/b&gt;" in page.text
    finally:
        eng.dispose()
