"""The recorder's bulk inserts hand back each row's id in the order of the rows given (``insert_ids``), on
both backends: with gaps left by deleted rows, across SQLAlchemy's batches, and beside another run's rows
written in between."""

from __future__ import annotations

from sqlalchemy import delete, select

from app.models import Prompt, Run
from app.worker.recorder import insert_ids


def _prompts(run_id: int, tag: str, n: int) -> list[dict]:
    return [{"run_id": run_id, "item_key": f"{tag}-{i}", "domain": "chemistry", "split": "train",
             "answer_type": "numeric", "question": f"q {tag} {i}", "choices": [], "labels": [], "gold": str(i)}
            for i in range(n)]


def test_ids_follow_the_rows_order(session):
    a, b = Run(name="a", config={}), Run(name="b", config={})
    session.add_all([a, b])
    session.flush()
    first = insert_ids(session, Prompt, _prompts(a.id, "first", 40))
    session.execute(delete(Prompt).where(Prompt.item_key.in_([f"first-{i}" for i in range(30, 40)])))
    insert_ids(session, Prompt, _prompts(b.id, "other", 7))
    # more rows than one multi-row statement holds, in a shuffled key order
    rows = _prompts(a.id, "second", 2500)
    rows = rows[1::2] + rows[::2]
    ids = insert_ids(session, Prompt, rows)
    session.commit()
    by_id = dict(session.execute(select(Prompt.id, Prompt.item_key)).all())
    assert [by_id[i] for i in first[:30]] == [f"first-{i}" for i in range(30)]
    assert [by_id[i] for i in ids] == [r["item_key"] for r in rows]
    assert len(set(ids)) == len(rows)
    assert insert_ids(session, Prompt, []) == []


def test_model_text_with_nul_characters_is_stored(db_url, tmp_path):
    """A byte-level tokenizer can decode a NUL character, which PostgreSQL's text and JSONB columns refuse:
    the recorder stores every model text with U+FFFD in its place (one for one, so per-token strings keep
    their positions), on both backends, instead of failing the run."""
    from app.db import make_engine, session_factory
    from app.models import Exchange, Feedback, Rollout
    from app.worker.recorder import Recorder
    from opcod_core import events as ev
    from seed import _held_run, _start
    from opcod_core.config import preset

    eng = make_engine(db_url)
    try:
        factory = session_factory(eng)
        cfg = preset("tiny", {"name": "nul"})
        run_id, worker_id = _held_run(factory, "nul", cfg)
        pos = {"round": 1, "direction": 1, "step": 0, "global_step": 0, "tutee": "phys", "tutor": "chem"}
        toks = ["The", " ans\x00", "wer"]
        rec = Recorder(factory, run_id, worker_id, out_dir=tmp_path)
        for e in (_start(cfg), ev.ExchangeEvent(
                **pos, key="r1-d1-s0-p0-k0", domain="chemistry", prompt_id="q", question="Q\x00?", gold="B",
                rollout_text="The ans\x00wer. Answer: B\x00", token_ids=[1, 2, 3], answer="B\x00", correct=True,
                s_text="s\x00", feedback_raw="<concept>x</concept> f\x00", concept="x\x00", category="kept",
                feedback_sanitised="f\x00", feedback_used="f\x00", redactions=[{"text": "r\x00"}],
                feedback_source="model", context_used="s+f", teacher_context="c\x00", tokens=toks,
                student_logprob=[-0.1] * 3, divergence=[0.1] * 3, divergence_s_only=[0.1] * 3, loss=0.1),
                ev.StepEvent(**pos, loss=0.1, metrics={})):
            rec.on_event(e)
        rec.flush()
        with factory() as s:
            x = s.scalars(select(Exchange).where(Exchange.run_id == run_id)).one()
            ro, fb = s.get(Rollout, x.rollout_id), s.get(Feedback, x.feedback_id)
            assert ro.text == "The ans\ufffdwer. Answer: B\ufffd" and ro.answer == "B\ufffd"
            assert x.tokens == ["The", " ans\ufffd", "wer"] and x.s_text == "s\ufffd" and x.teacher_context == "c\ufffd"
            assert (fb.raw, fb.sanitised, fb.used_text, fb.concept) == (
                "<concept>x</concept> f\ufffd", "f\ufffd", "f\ufffd", "x\ufffd")
            assert fb.redactions == [{"text": "r\ufffd"}]
            assert s.get(Prompt, ro.prompt_id).question == "Q\ufffd?"
    finally:
        eng.dispose()


def test_the_run_row_is_fenced_and_updated_once_per_transaction(db_url, tmp_path):
    """The fence is the transaction's last statement and carries the batch's changes to the run (progress,
    exchange count, heartbeat): while the worker holds the run they land together; once another worker
    took it over the whole batch is rolled back (``RunLost``) and nothing of it is stored."""
    import pytest
    from sqlalchemy import func, update

    from app.db import make_engine, session_factory, session_scope
    from app.models import Event, Exchange, Step
    from app.worker.claim import RunLost, register_worker
    from app.worker.recorder import Recorder
    from opcod_core import events as ev
    from opcod_core.config import preset
    from seed import _held_run, _start

    def step_events(g: int, n: int) -> list:
        pos = {"round": 1, "direction": 1, "step": g, "global_step": g, "tutee": "phys", "tutor": "chem"}
        return [ev.ExchangeEvent(**pos, key=f"r1-d1-s{g}-p0-k{k}", domain="chemistry", prompt_id="q", question="Q?",
                                 gold="B", rollout_text="Answer: B", token_ids=[1], answer="B", correct=True,
                                 context_used="s", tokens=["B"], student_logprob=[-0.1], divergence=[0.1],
                                 divergence_s_only=[0.1], loss=0.1) for k in range(n)] + [
            ev.StepEvent(**pos, loss=0.1, metrics={})]

    eng = make_engine(db_url)
    try:
        factory = session_factory(eng)
        cfg = preset("tiny", {"name": "fence"})
        run_id, worker_id = _held_run(factory, "fence", cfg)
        rec = Recorder(factory, run_id, worker_id, out_dir=tmp_path)
        rec.on_event(_start(cfg))
        for e in step_events(0, 3) + step_events(1, 2):
            rec.on_event(e)
        with factory() as s:
            run = s.get(Run, run_id)
            assert run.exchange_count == 5 and run.progress["global_step"] == 1 and run.next_task == 0
            assert s.scalar(select(func.count()).select_from(Exchange).where(Exchange.run_id == run_id)) == 5
            events_before = s.scalar(select(func.count()).select_from(Event).where(Event.run_id == run_id))
        other = register_worker(factory, "other")
        with session_scope(factory) as s:   # taken over
            s.execute(update(Run).where(Run.id == run_id).values(worker_id=other))
        for e in step_events(2, 4)[:-1]:
            rec.on_event(e)
        with pytest.raises(RunLost):
            rec.on_event(step_events(2, 4)[-1])
        with factory() as s:
            run = s.get(Run, run_id)
            assert run.exchange_count == 5 and run.progress["global_step"] == 1
            assert s.scalar(select(func.count()).select_from(Exchange).where(Exchange.run_id == run_id)) == 5
            assert s.scalar(select(func.count()).select_from(Step).where(Step.run_id == run_id)) == 2
            assert s.scalar(select(func.count()).select_from(Event).where(Event.run_id == run_id)) == events_before
    finally:
        eng.dispose()
