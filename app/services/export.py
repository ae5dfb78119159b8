"""Export a run's exchanges as JSON Lines, streamed in keyset chunks (oldest first, one short
transaction per chunk, so a million-exchange export neither holds a transaction open nor builds the
whole file in memory). One line = one exchange with its prompt, rollout, feedback and per-token arrays."""

from __future__ import annotations

import json
from typing import Any, Iterator

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from app.db import session_scope
from app.models import Exchange, Rollout
from app.services import SessionFactory, get_run

CHUNK = 200


def check_run(db: SessionFactory, run_id: int) -> None:
    with session_scope(db) as s:
        get_run(s, run_id)


def _row(ex: Exchange) -> dict[str, Any]:
    r, p, f = ex.rollout, ex.rollout.prompt, ex.feedback
    return {
        "id": ex.id, "run_id": ex.run_id, "key": ex.key, "round": ex.round, "direction": ex.direction,
        "global_step": ex.global_step, "tutee": ex.tutee, "tutor": ex.tutor, "domain": ex.domain,
        "correct": ex.correct, "category": ex.category, "human_edited": ex.human_edited,
        "origin_exchange_id": ex.origin_exchange_id, "override_id": ex.override_id,
        "context_used": ex.context_used, "skipped": ex.skipped, "finish_reason": ex.finish_reason, "loss": ex.loss,
        "prompt": {"item_key": p.item_key, "domain": p.domain, "split": p.split, "answer_type": p.answer_type,
                   "question": p.question, "choices": p.choices, "labels": p.labels, "gold": p.gold},
        "rollout": {"text": r.text, "token_ids": r.token_ids, "answer": r.answer, "correct": r.correct,
                    "prompt_index": r.prompt_index, "rollout_index": r.rollout_index},
        "s_index": ex.s_index, "s_text": ex.s_text,
        "feedback": None if f is None else {
            "tutor": f.tutor, "raw": f.raw, "concept": f.concept, "category": f.category,
            "sanitised": f.sanitised, "redactions": f.redactions, "used_text": f.used_text,
            "source": f.source, "approval": f.approval},
        "teacher_context": ex.teacher_context, "tokens": ex.tokens, "student_logprob": ex.student_logprob,
        "divergence": ex.divergence, "divergence_s_only": ex.divergence_s_only,
        "created_at": ex.created_at.isoformat(),
    }


def jsonl(db: SessionFactory, run_id: int, chunk: int = CHUNK) -> Iterator[bytes]:
    after = 0
    while True:
        with session_scope(db) as s:
            rows = s.scalars(select(Exchange).where(Exchange.run_id == run_id, Exchange.id > after)
                             .order_by(Exchange.id).limit(chunk)
                             .options(selectinload(Exchange.rollout).selectinload(Rollout.prompt),
                                      selectinload(Exchange.feedback))).all()
            if not rows:
                return
            lines = [json.dumps(_row(ex), ensure_ascii=False, separators=(",", ":")) for ex in rows]
            after = rows[-1].id
        yield ("\n".join(lines) + "\n").encode()
