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
