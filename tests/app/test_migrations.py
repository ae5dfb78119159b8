"""Alembic builds the schema, tears it down and builds it again, on SQLite and PostgreSQL, and the
migrated schema is exactly ``app.models`` (autogenerate finds nothing to do)."""

from __future__ import annotations

import subprocess
import sys

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
import pytest
from sqlalchemy import inspect

from app.db import ROOT, downgrade, make_engine, upgrade
from app.models import Base

TABLES = {t.name for t in Base.metadata.sorted_tables}


def _tables(url: str) -> set[str]:
    eng = make_engine(url)
    try:
        return set(inspect(eng).get_table_names())
    finally:
        eng.dispose()


def _diff(url: str) -> list:
    eng = make_engine(url)
    try:
        with eng.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            return compare_metadata(ctx, Base.metadata)
    finally:
        eng.dispose()


def test_every_design_table_is_modelled():
    assert {"worker", "run", "student", "gate_record", "step", "prompt", "rollout", "feedback", "exchange",
            "eval_result", "override", "approval", "replay", "checkpoint", "metric", "event"} <= TABLES


def test_upgrade_downgrade_upgrade(empty_db_url):
    assert _tables(empty_db_url) == set()
    upgrade(empty_db_url)
    assert _tables(empty_db_url) == TABLES | {"alembic_version"}
    downgrade(empty_db_url, "base")
    assert _tables(empty_db_url) == {"alembic_version"}
    upgrade(empty_db_url)
    assert _tables(empty_db_url) == TABLES | {"alembic_version"}
    upgrade(empty_db_url)  # idempotent at head


def test_autogenerate_finds_no_difference(db_url):
    assert _diff(db_url) == []


def test_indexes_and_constraint_names_follow_the_convention(db_url):
    eng = make_engine(db_url)
    try:
        insp = inspect(eng)
        ex_indexes = {ix["name"] for ix in insp.get_indexes("exchange")}
        for col in ("domain", "round", "direction", "category", "correct", "human_edited", "tutee", "tutor"):
            assert f"ix_exchange_run_id_{col}_id" in ex_indexes
        assert "ix_exchange_run_id_id" in ex_indexes
        fks = {fk["name"] for fk in insp.get_foreign_keys("exchange")}
        assert "fk_exchange_run_id_run" in fks
        uqs = {uq["name"] for uq in insp.get_unique_constraints("exchange")}
        assert "uq_exchange_run_id_key" in uqs
    finally:
        eng.dispose()


def test_alembic_cli_takes_the_url_from_x_argument(tmp_path):
    url = f"sqlite:///{tmp_path / 'cli' / 'opcod.db'}"
    res = subprocess.run([sys.executable, "-m", "alembic", "-x", f"url={url}", "upgrade", "head"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert _tables(url) == TABLES | {"alembic_version"}
    assert _diff(url) == []


def test_finish_reason_revision_keeps_every_exchange(db_url):
    """exchange.finish_reason is nullable: going down to the revision before it and back up keeps
    every exchange (a batch copy of the table would cascade to the rows that reference it) and leaves
    the old rows' finish reasons NULL."""
    import api_seed
    from sqlalchemy import select, text

    from app.db import session_factory, session_scope
    from app.models import Exchange, Override

    eng = make_engine(db_url)
    try:
        factory = session_factory(eng)
        seeded = api_seed.seed_run(factory, steps=1, per_step=4)
        with session_scope(factory) as s:
            s.add(Override(run_id=seeded.run_id, exchange_id=seeded.exchange_ids[0], kind="reject", payload={},
                           author="test"))
        with eng.connect() as conn:
            assert conn.execute(select(Exchange.finish_reason).order_by(Exchange.id)).scalars().all() == [
                api_seed.finish_of(i) for i in range(4)]
        downgrade(db_url, "0001")
        assert "finish_reason" not in {c["name"] for c in inspect(eng).get_columns("exchange")}
        with eng.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM exchange")).scalar() == 4
            assert conn.execute(text("SELECT count(*) FROM override")).scalar() == 1
        upgrade(db_url)
        with eng.connect() as conn:
            assert conn.execute(select(Exchange.finish_reason)).scalars().all() == [None] * 4
            assert conn.execute(text("SELECT count(*) FROM override")).scalar() == 1
    finally:
        eng.dispose()


def test_stored_aggregates_revision_counts_existing_runs(db_url):
    """Going down to the revision before the stored aggregates and back up counts the runs' existing
    exchanges and averages each step's trained exchanges, as the recorder keeps them from then on."""
    import api_seed
    from sqlalchemy import select

    from app.db import session_factory
    from app.models import Exchange, Run, Step

    eng = make_engine(db_url)
    try:
        factory = session_factory(eng)
        a = api_seed.seed_run(factory, name="a", steps=2, per_step=3)
        b = api_seed.seed_run(factory, name="b", steps=1, per_step=5)

        def stored() -> tuple[dict, dict]:
            with factory() as s:
                return ({r.id: r.exchange_count for r in s.scalars(select(Run))},
                        {st.id: st.exchange_divergence for st in s.scalars(select(Step))})

        before = stored()
        assert before[0] == {a.run_id: 6, b.run_id: 5}
        with factory() as s:
            for st in s.scalars(select(Step)):
                losses = [x.loss for x in s.scalars(select(Exchange).where(Exchange.step_id == st.id))
                          if not x.skipped and x.loss is not None]
                assert before[1][st.id] == (pytest.approx(sum(losses) / len(losses)) if losses else None)
        downgrade(db_url, "ckpt_pruned_0006")
        assert "exchange_count" not in {c["name"] for c in inspect(eng).get_columns("run")}
        upgrade(db_url)
        after = stored()
        assert after[0] == before[0]
        assert after[1] == {k: (pytest.approx(v) if v is not None else None) for k, v in before[1].items()}
    finally:
        eng.dispose()


def test_n_students_revision_keeps_two_student_runs_and_admits_eight(db_url):
    """From the two-student schema (flows_0008) with a run and its exchanges in it, the upgrade keeps every
    row and admits students at positions 2-7 (not 8); going back down refuses while a run has more than two
    students, and works once it is gone."""
    import api_seed
    from sqlalchemy import func, select, text
    from sqlalchemy.exc import IntegrityError

    from app.db import session_factory, session_scope
    from app.models import Exchange, Run, Student

    eng = make_engine(db_url)
    try:
        factory = session_factory(eng)
        seeded = api_seed.seed_run(factory, steps=1, per_step=4)   # by today's recorder, then taken down
        downgrade(db_url, "flows_0008")
        with eng.connect() as conn:
            with pytest.raises(IntegrityError):     # the old schema: two students at most
                with conn.begin():
                    conn.execute(text("INSERT INTO student (run_id, position, name, model_ref) "
                                      "VALUES (:r, 2, 'elec', 'tiny:llama')"), {"r": seeded.run_id})
        upgrade(db_url)
        with factory() as s:
            assert [st.position for st in s.scalars(select(Student).where(Student.run_id == seeded.run_id)
                                                    .order_by(Student.position))] == [0, 1]
            assert s.scalar(select(func.count()).select_from(Exchange)) == 4
        with session_scope(factory) as s:
            run = s.get(Run, seeded.run_id)
            run.students += [Student(position=p, name=f"peer{p}", model_ref="tiny:llama") for p in range(2, 8)]
        with pytest.raises(IntegrityError):
            with session_scope(factory) as s:
                s.add(Student(run_id=seeded.run_id, position=8, name="ninth", model_ref="tiny:llama"))
        with pytest.raises(RuntimeError, match="more than two students"):
            downgrade(db_url, "flows_0008")
        with session_scope(factory) as s:
            s.execute(text("DELETE FROM student WHERE position > 1"))
        downgrade(db_url, "flows_0008")
        upgrade(db_url)
        with factory() as s:
            assert s.scalar(select(func.count()).select_from(Student)) == 2
            assert s.scalar(select(func.count()).select_from(Exchange)) == 4
    finally:
        eng.dispose()


def test_tutor_trust_revision_keeps_every_row_and_fills_the_probe_domains(db_url):
    """Down to the schema before tutor trust (n_students_0009) with a three-student run in it and back up:
    every exchange, feedback row and probe is kept; the trust changes, routes and shadow marks of the newer
    schema are gone (the old schema cannot hold them) and come back empty; each probe's domain is filled
    from its stored exchange (NULL for the probe whose exchange is not stored); the recorder writes the new
    columns again afterwards."""
    from sqlalchemy import func, select, text

    from app.db import session_factory
    from app.models import BreakSample, Exchange, Feedback, TrustChange
    from app.services import trust as trust_service
    from opcod_core import events as ev
    from seed import seed_events
    from trust_events import DOMAINS, STUDENTS, trust_events

    eng = make_engine(db_url)
    try:
        factory = session_factory(eng)
        events = trust_events()
        step0 = next(e for e in events if isinstance(e, ev.StepEvent))
        orphan = ev.BreakEvent(**step0.model_dump(include={"round", "direction", "step", "global_step", "tutee",
                                                            "tutor"}),
                               exchange_key="not-stored", domain="physics", tutor_cognizant=True, difficulty="easy",
                               correct_with_f=False, correct_without_f=True, eligible=True, broken=True)
        seeded = seed_events(factory, [orphan, *events], name="trust", students=STUDENTS, domains=DOMAINS)

        def counts() -> tuple[int, int, int]:
            with eng.connect() as conn:
                return tuple(conn.execute(text(f"SELECT count(*) FROM {t}")).scalar() for t in
                             ("exchange", "feedback", "break_sample"))

        with factory() as s:
            domains = dict(s.execute(select(BreakSample.id, BreakSample.domain)).all())
            assert s.scalar(select(func.count()).select_from(TrustChange)) == 4
            assert s.scalar(select(func.count()).select_from(Feedback).where(Feedback.shadow.is_(True))) > 0
        before = counts()
        assert before[1] > before[0]   # more feedback rows than exchanges: several tutors wrote on some
        downgrade(db_url, "n_students_0009")
        insp = inspect(eng)
        assert "trust_change" not in insp.get_table_names()
        assert {"shadow", "domain"}.isdisjoint(c["name"] for c in insp.get_columns("break_sample"))
        assert {"tutors", "quarantined", "route_reason"}.isdisjoint(c["name"] for c in insp.get_columns("exchange"))
        assert "shadow" not in {c["name"] for c in insp.get_columns("feedback")}
        assert counts() == before
        upgrade(db_url)
        assert counts() == before
        with factory() as s:
            filled = dict(s.execute(select(BreakSample.id, BreakSample.domain)).all())
            assert filled == {i: (None if i == min(domains) else d) for i, d in domains.items()}   # the orphan first
            assert s.scalar(select(func.count()).select_from(TrustChange)) == 0
            assert s.scalar(select(func.count()).select_from(Feedback).where(Feedback.shadow.is_(True))) == 0
            assert s.scalar(select(func.count()).select_from(BreakSample).where(BreakSample.shadow.is_(True))) == 0
            assert s.scalars(select(Exchange.tutors).where(Exchange.tutors.is_not(None))).first() is None
        body = trust_service.trust(factory, seeded.run_id)
        assert body.undomained_probes == 1 and all(t.periods == [] for t in body.tutors)
        again = seed_events(factory, events, name="after", students=STUDENTS, domains=DOMAINS)
        with factory() as s:
            assert s.scalar(select(func.count()).select_from(TrustChange).where(
                TrustChange.run_id == again.run_id)) == 4
            assert s.scalar(select(func.count()).select_from(BreakSample).where(
                BreakSample.run_id == again.run_id, BreakSample.shadow.is_(True))) > 0
    finally:
        eng.dispose()


def test_flows_feedback_revision_rebuilds_the_two_indexes_and_keeps_every_row(db_url):
    """Down to tutor_trust_0010 with an N-peer run in it (every tutor's feedback, shadow rows) and back up: the
    flow matrix's two indexes are what 0008 and 0001 made, then what 0011 makes; no row changes, and the
    matrix (which reads the same either way, only slower) stays the same."""
    from sqlalchemy import text

    from app.db import session_factory
    from app.services import flows
    from seed import seed_events
    from test_flows import n_peer_events
    from trust_events import DOMAINS, STUDENTS

    def columns(table: str) -> dict[str, list[str]]:
        return {ix["name"]: ix["column_names"] for ix in inspect(eng).get_indexes(table)}

    def counts() -> tuple[int, ...]:
        with eng.connect() as conn:
            return tuple(conn.execute(text(f"SELECT count(*) FROM {t}")).scalar() for t in
                         ("exchange", "feedback", "break_sample"))

    eng = make_engine(db_url)
    try:
        factory = session_factory(eng)
        run_id = seed_events(factory, n_peer_events(), name="n peers", students=STUDENTS, domains=DOMAINS).run_id
        matrix, before = flows.flows(factory, run_id), counts()
        assert any(d.shadow for r in matrix.rows for c in r.cells for d in c.domains)
        flows_index = ["run_id", "tutor", "tutee", "domain", "round", "category", "human_edited"]
        downgrade(db_url, "tutor_trust_0010")
        eng.dispose()
        assert columns("exchange")["ix_exchange_run_id_flows"] == flows_index
        assert columns("feedback") == {"ix_feedback_rollout_id": ["rollout_id"]}
        assert counts() == before and flows.flows(factory, run_id) == matrix
        upgrade(db_url)
        eng.dispose()
        assert columns("exchange")["ix_exchange_run_id_flows"] == [*flows_index, "rollout_id", "feedback_id"]
        assert columns("feedback") == {"ix_feedback_rollout_id_shadow": ["rollout_id", "shadow"]}
        assert counts() == before and flows.flows(factory, run_id) == matrix
    finally:
        eng.dispose()


def test_feedback_own_used_revision_moves_the_joined_f_and_back(db_url):
    """Down to flows_feedback_0011 with an N-peer run in it and back up: before 0012 the primary feedback row
    of a rollout with several tutors' rows held the f the teacher saw (the joined parts), from it on each row
    holds its own part; the other rows, every single-row rollout and the events read back never change."""
    from collections import Counter

    from sqlalchemy import select, text

    from app.db import session_factory
    from app.exchange_events import exchange_event
    from app.models import Exchange, Feedback
    from opcod_core import events as ev
    from seed import seed_events
    from test_flows import n_peer_events
    from trust_events import DOMAINS, STUDENTS

    def used() -> dict[int, str | None]:
        with eng.connect() as conn:
            return dict(conn.execute(text("SELECT id, used_text FROM feedback")).all())

    def read_back() -> list[dict]:
        with factory() as s:
            return [exchange_event(x).to_dict() for x in s.scalars(select(Exchange).order_by(Exchange.id))]

    eng = make_engine(db_url)
    try:
        factory = session_factory(eng)
        events = n_peer_events()
        seed_events(factory, events, name="n peers", students=STUDENTS, domains=DOMAINS)
        own, back = used(), read_back()
        by_key = {e.key: e for e in events if isinstance(e, ev.ExchangeEvent)}
        with factory() as s:
            rows_per_rollout = Counter(s.scalars(select(Feedback.rollout_id)))
            primaries = s.execute(select(Exchange.feedback_id, Exchange.key, Exchange.rollout_id).where(
                Exchange.feedback_id.is_not(None))).all()
        joined = {fid: by_key[key].feedback_used for fid, key, rid in primaries if rows_per_rollout[rid] > 1}
        assert any(own[fid] and own[fid] != joined[fid] for fid in joined)  # a part that is not the whole f
        assert any(own[fid] is None and joined[fid] for fid in joined)      # a primary whose part was not used
        downgrade(db_url, "flows_feedback_0011")
        eng.dispose()
        assert used() == {**own, **joined}
        upgrade(db_url, "feedback_own_used_0012")
        eng.dispose()
        assert used() == own
        upgrade(db_url)
        eng.dispose()
        assert unpoisoned(read_back()) == unpoisoned(back)     # 0013's marks are the next test's
    finally:
        eng.dispose()


def unpoisoned(lines: list[dict]) -> list[dict]:
    """Exchange lines without the fault marks of their feedback records."""
    return [{**x, **({"feedbacks": [{k: v for k, v in f.items() if k != "poisoned"} for f in x["feedbacks"]]}
                     if x.get("feedbacks") else {})} for x in lines]


def test_feedback_poisoned_revision_drops_the_marks_and_keeps_every_row(db_url):
    """Down to feedback_own_used_0012 with a run whose feedback a benchmark fault poisoned and back up: the
    column goes and comes back ``false``; every feedback row and its text stays; new rows are marked again."""
    from sqlalchemy import func, select, text

    from app.db import session_factory
    from app.models import Feedback
    from seed import seed_events
    from trust_events import DOMAINS, STUDENTS, trust_events

    def rows() -> list[tuple]:
        with eng.connect() as conn:
            return conn.execute(text("SELECT id, tutor, raw, used_text, shadow FROM feedback ORDER BY id")).all()

    eng = make_engine(db_url)
    try:
        factory = session_factory(eng)
        seed_events(factory, trust_events(), name="poisoned", students=STUDENTS, domains=DOMAINS)
        marked = select(func.count()).select_from(Feedback).where(Feedback.poisoned.is_(True))
        with factory() as s:
            assert s.scalar(marked) > 0
        before = rows()
        downgrade(db_url, "feedback_own_used_0012")
        eng.dispose()
        assert "poisoned" not in {c["name"] for c in inspect(eng).get_columns("feedback")}
        assert rows() == before
        upgrade(db_url)
        eng.dispose()
        assert rows() == before
        with factory() as s:
            assert s.scalar(marked) == 0
        seed_events(factory, trust_events(), name="again", students=STUDENTS, domains=DOMAINS)
        with factory() as s:
            assert s.scalar(marked) > 0
    finally:
        eng.dispose()
