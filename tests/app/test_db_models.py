"""The ORM on both backends: a full exchange round-trips (compact arrays included), keyset pagination
is served by its index, SQLite connections get WAL/busy_timeout/foreign keys, and keys are enforced."""

from __future__ import annotations

import math
import struct
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import delete, func, select, text
from sqlalchemy.exc import IntegrityError

from app.models import (
    Event,
    Exchange,
    Feedback,
    Prompt,
    Rollout,
    Run,
    Step,
    Student,
)

LOGPROB = [-0.1, -1.0 / 3.0, -2.5, float("-inf"), 1e-8]
DIVERGENCE = [0.0, 0.123456789, 3.14159265358979]
TOKEN_IDS = [0, 1, 2**31 - 1, -(2**31), 42]


def f32(x: float) -> float:
    return struct.unpack("<f", struct.pack("<f", x))[0]


def make_run(session, name="r") -> Run:
    run = Run(name=name, preset="tiny", config={"seed": 0, "students": ["a", "b"]})
    run.students = [Student(position=0, name="a", model_ref="tiny-llama", strong_domain="chemistry"),
                    Student(position=1, name="b", model_ref="tiny-qwen", strong_domain="physics")]
    session.add(run)
    session.flush()
    return run


def make_exchange(session, run: Run, *, global_step=0, key="r1-d1-s0-p0-k0", domain="chemistry",
                  round=1, direction=1, category="kept", correct=True, human_edited=False,
                  logprob=LOGPROB, divergence=DIVERGENCE, s_only=None, step=None, prompt=None) -> Exchange:
    step = step or Step(run_id=run.id, round=round, direction=direction, step=global_step, global_step=global_step,
                        tutee="a", tutor="b", loss=0.5, metrics={"loss/jsd": 0.5, "time/step": 0.01})
    prompt = prompt or Prompt(run_id=run.id, item_key=f"chem-{key}", domain=domain, split="train",
                              question="Which gas?", choices=["He", "Ne"], labels=["A", "B"], gold="A")
    rollout = Rollout(run_id=run.id, step_row=step, prompt=prompt, student="a", prompt_index=0,
                      rollout_index=0, text="The answer is A", token_ids=TOKEN_IDS, answer="A", correct=correct)
    fb = Feedback(rollout=rollout, tutor="b", raw="<concept>gas</concept> check", concept="gas",
                  category=category, sanitised="check", redactions=[{"span": [0, 3], "why": "answer"}],
                  used_text="check", source="model")
    ex = Exchange(run_id=run.id, key=key, step_row=step, rollout=rollout, feedback=fb, round=round,
                  direction=direction, global_step=global_step, tutee="a", tutor="b", domain=domain,
                  correct=correct, category=category, human_edited=human_edited, s_index=1, s_text="A because",
                  context_used="s+f", skipped=False, teacher_context="Q ... A because ... check",
                  tokens=["The", " answer", " is", " A", "<eos>"], student_logprob=logprob,
                  divergence=divergence, divergence_s_only=s_only, loss=0.25)
    session.add(ex)
    session.flush()
    return ex


def test_exchange_round_trip(engine, session):
    run = make_run(session)
    ex = make_exchange(session, run)
    session.commit()
    ex_id, run_id = ex.id, run.id
    session.expunge_all()

    got = session.get(Exchange, ex_id)
    assert got.student_logprob == [f32(x) for x in LOGPROB]
    assert got.student_logprob[3] == -math.inf
    assert got.student_logprob[0] != -0.1 and got.student_logprob[0] == pytest.approx(-0.1, rel=1e-6)
    assert got.divergence == [f32(x) for x in DIVERGENCE]
    assert got.divergence_s_only is None
    assert got.rollout.token_ids == TOKEN_IDS
    assert got.rollout.prompt.choices == ["He", "Ne"]
    assert got.feedback.redactions == [{"span": [0, 3], "why": "answer"}]
    assert got.tokens[-1] == "<eos>"
    assert got.step_row.metrics == {"loss/jsd": 0.5, "time/step": 0.01}
    assert got.created_at.tzinfo is not None and got.created_at.utcoffset().total_seconds() == 0
    r = session.get(Run, run_id)
    assert [s.name for s in r.students] == ["a", "b"] and r.status == "queued"
    # the bytes really are packed float32 little-endian, 4 bytes per value
    raw = session.execute(text("SELECT student_logprob FROM exchange WHERE id = :i"), {"i": ex_id}).scalar_one()
    assert len(bytes(raw)) == 4 * len(LOGPROB)
    assert struct.unpack(f"<{len(LOGPROB)}f", bytes(raw))[1] == f32(-1.0 / 3.0)


def test_empty_arrays_and_none(engine, session):
    run = make_run(session)
    ex = make_exchange(session, run, logprob=None, divergence=[], s_only=None)
    session.commit()
    session.expunge_all()
    got = session.get(Exchange, ex.id)
    assert got.student_logprob is None and got.divergence == [] and got.divergence_s_only is None


def test_json_none_is_sql_null(engine, session):
    run = make_run(session)
    run.progress, run.summary = None, {"students": {}}
    session.commit()
    assert session.scalar(select(func.count(Run.id)).where(Run.progress.is_(None))) == 1
    assert session.scalar(select(func.count(Run.id)).where(Run.summary.is_(None))) == 0


def test_timestamps_are_utc_aware(engine, session):
    run = make_run(session)
    naive = datetime(2030, 1, 2, 3, 4, 5)
    aware = datetime(2030, 1, 2, 5, 4, 5, tzinfo=timezone.utc).astimezone(timezone(timedelta(hours=2)))
    run.started_at, run.finished_at = naive, aware
    session.commit()
    session.expunge_all()
    got = session.get(Run, run.id)
    assert got.started_at == datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    assert got.finished_at == datetime(2030, 1, 2, 5, 4, 5, tzinfo=timezone.utc)
    assert got.finished_at.tzinfo == timezone.utc


def _page(session, run_id: int, cursor: int | None, limit: int, **filters):
    q = select(Exchange.id).where(Exchange.run_id == run_id)
    for col, value in filters.items():
        q = q.where(getattr(Exchange, col) == value)
    if cursor is not None:
        q = q.where(Exchange.id < cursor)
    return list(session.scalars(q.order_by(Exchange.id.desc()).limit(limit)))


def _fill(session, n=12):
    run = make_run(session)
    other = make_run(session, "other")
    prompt = Prompt(run_id=run.id, item_key="shared", domain="chemistry", question="Q", gold="A")
    ids = []
    for g in range(n):
        step = Step(run_id=run.id, round=1 + g // 6, direction=1 + (g // 3) % 2, step=g, global_step=g,
                    tutee="a", tutor="b", loss=0.1)
        ex = make_exchange(session, run, global_step=g, key=f"k{g}", step=step, prompt=prompt,
                           domain="chemistry" if g % 2 else "physics", round=step.round, direction=step.direction,
                           category="kept" if g % 3 else "no_match", correct=bool(g % 2), human_edited=g == 5)
        ids.append(ex.id)
    make_exchange(session, other, key="elsewhere")
    session.commit()
    return run, ids


def test_keyset_pagination_newest_first(engine, session):
    run, ids = _fill(session)
    seen, cursor = [], None
    while True:
        page = _page(session, run.id, cursor, 5)
        if not page:
            break
        seen += page
        cursor = page[-1]
    assert seen == sorted(ids, reverse=True)
    chem = [i for g, i in enumerate(ids) if g % 2]
    assert _page(session, run.id, None, 100, domain="chemistry") == sorted(chem, reverse=True)
    assert _page(session, run.id, chem[-1], 2, domain="chemistry") == sorted(chem, reverse=True)[1:3]
    assert _page(session, run.id, None, 100, human_edited=True) == [ids[5]]


RARE = {"domain": "biology", "round": 7, "direction": 2, "category": "empty", "correct": True, "human_edited": True,
        "tutor": "c"}
COMMON = {"domain": "chemistry", "round": 1, "direction": 1, "category": "kept", "correct": False,
          "human_edited": False, "tutor": "b"}
FILTERS = [None, *RARE]


def _bulk(session, run: Run, other: Run, rare_run: bool, n: int = 3000) -> None:
    """Many exchanges, one in 100 rare (rare filter values, or ``run``'s own rows among ``other``'s),
    inserted in one executemany, then ANALYZE so each planner sees realistic statistics."""
    base = make_exchange(session, run, key="base")
    cols = {c: getattr(base, c) for c in ("step_id", "rollout_id", "global_step", "tutee", "tutor",
                                          "context_used", "skipped")}
    rows = []
    for i in range(n):
        rare = i % 100 == 0
        run_id = run.id if (rare or not rare_run) else other.id
        rows.append({**cols, **(RARE if rare else COMMON), "run_id": run_id, "key": f"bulk-{i}"})
    session.execute(Exchange.__table__.insert(), rows)
    session.commit()
    session.execute(text("ANALYZE"))
    session.commit()


@pytest.mark.parametrize("column", FILTERS, ids=[c or "none" for c in FILTERS])
def test_keyset_query_uses_its_index(engine, session, column):
    run, other = make_run(session), make_run(session, "other")
    _bulk(session, run, other, rare_run=column is None)
    index = f"ix_exchange_run_id_{column}_id" if column else "ix_exchange_run_id_id"
    top = session.scalar(select(func.max(Exchange.id)))
    q = select(Exchange.id).where(Exchange.run_id == run.id)
    if column:
        q = q.where(getattr(Exchange, column) == RARE[column])
    q = q.where(Exchange.id < top - 10).order_by(Exchange.id.desc()).limit(20)
    sql = str(q.compile(engine, compile_kwargs={"literal_binds": True}))
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            plan = " | ".join(str(r[-1]) for r in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}"))
            assert f"USING INDEX {index}" in plan or f"USING COVERING INDEX {index}" in plan, plan
        else:
            plan = " | ".join(r[0] for r in conn.exec_driver_sql(f"EXPLAIN {sql}"))
            assert index in plan and "Seq Scan" not in plan, plan
        assert "TEMP B-TREE" not in plan and "Sort" not in plan, plan  # the index yields the order


def test_sqlite_connection_pragmas(tmp_path):
    from app.db import make_engine

    eng = make_engine(f"sqlite:///{tmp_path / 'nested' / 'dir' / 'x.db'}")
    try:
        with eng.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert (tmp_path / "nested" / "dir" / "x.db").exists()
    finally:
        eng.dispose()


def test_foreign_keys_are_enforced(engine, session):
    session.add(Student(run_id=987654, position=0, name="ghost", model_ref="m"))
    with pytest.raises(IntegrityError):
        session.flush()
    session.rollback()


def test_check_and_unique_constraints(engine, session):
    run = make_run(session)
    session.commit()
    run.status = "exploded"
    with pytest.raises(IntegrityError):
        session.flush()
    session.rollback()
    session.add(Student(run_id=run.id, position=0, name="a", model_ref="dup"))
    with pytest.raises(IntegrityError):
        session.flush()
    session.rollback()


def test_deleting_a_run_cascades(engine, session):
    run, _ = _fill(session, n=3)
    session.add(Event(run_id=run.id, type="step", ref_id=1, payload={"global_step": 0}))
    session.commit()
    session.execute(delete(Run).where(Run.id == run.id))
    session.commit()
    for model in (Exchange, Rollout, Feedback, Step, Prompt, Student, Event):
        col = Feedback.id if model is Feedback else model.run_id
        q = select(func.count(col))
        if model is not Feedback:
            q = q.where(model.run_id == run.id)
        n = session.scalar(q)
        assert n == (1 if model is Feedback else 0), model.__name__  # the other run's feedback stays


def test_event_ids_increase_and_are_never_reused(engine, session):
    run = make_run(session)
    first = [Event(run_id=run.id, type="step", payload={}) for _ in range(3)]
    session.add_all(first)
    session.commit()
    top = first[-1].id
    session.execute(delete(Event).where(Event.id == top))
    session.commit()
    nxt = Event(run_id=run.id, type="gate", payload={})
    session.add(nxt)
    session.commit()
    assert [e.id for e in first] == sorted(e.id for e in first)
    assert nxt.id > top
