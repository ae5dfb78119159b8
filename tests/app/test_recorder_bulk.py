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
