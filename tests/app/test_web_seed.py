"""Seeding for the dashboard tests: a realistic run written as ORM rows through the real models (the
same rows a worker writes), into a database migrated by Alembic. Also loaded by path from
``tests/browser/conftest.py``. The one test here checks the seed itself."""

from __future__ import annotations

from datetime import timedelta

from app.models import (
    Approval,
    BreakSample,
    Checkpoint,
    EvalResult,
    Event,
    Exchange,
    Feedback,
    GateRecord,
    Override,
    Prompt,
    Replay,
    Rollout,
    Run,
    Step,
    Student,
)
from app.types import utcnow
from opcod_core.config import preset

XSS_SCRIPT = "<script>window.__xss=1</script>"
XSS_IMG = '<img src=x onerror="window.__xss=2">'
XSS = XSS_SCRIPT + " " + XSS_IMG


def _tokens(text: str) -> list[str]:
    out, cur = [], ""
    for ch in text:
        cur += ch
        if ch == " " or len(cur) >= 4:
            out.append(cur)
            cur = ""
    if cur:
        out.append(cur)
    return out


def seed_run(session, *, name: str = "seeded", status: str = "running", xss: bool = False, steps: int = 4,
             per_step: int = 3, approval: str = "auto", with_replay: bool = True) -> dict:
    """One run with students, gates, evals, steps+metrics, prompts, rollouts, feedback, exchanges with
    per-token arrays, break samples, an override, a checkpoint, a pending approval and a finished replay.
    Returns ids: run, exchanges (oldest first), kept exchange, approval, replay, checkpoint."""
    cfg = preset("tiny", {"name": name, "tutor": {"approval": approval}}).to_dict()
    now = utcnow()
    run = Run(name=name, preset="tiny", config=cfg, status=status, total_tasks=1 + 2 * (2 * 3 + 2),
              next_task=5, progress={"round": 1, "direction": 1, "step": 2, "global_step": steps},
              started_at=now - timedelta(seconds=60), created_at=now - timedelta(seconds=90))
    run.students = [Student(position=0, name="chem", model_ref="tiny:llama", strong_domain="chemistry"),
                    Student(position=1, name="phys", model_ref="tiny:qwen2", strong_domain="physics")]
    session.add(run)
    session.flush()
    rid = run.id
    ev = []
    for r, accs in ((0, {"chem": (0.50, 0.40), "phys": (0.30, 0.55)}),
                    (1, {"chem": (0.55, 0.45), "phys": (0.35, 0.50)})):
        for st, (a, b) in accs.items():
            for dom, acc in (("chemistry", a), ("physics", b)):
                e = EvalResult(run_id=rid, round=r, student=st, domain=dom, split="test", k=2, accuracy=acc, n_items=16)
                session.add(e)
                ev.append(e)
    for st, delta, dec in (("chem", 0.05, "tutor"), ("phys", 0.35, "silent")):
        session.add(GateRecord(run_id=rid, round=1, student=st, scores={"chemistry": 0.5, "physics": 0.45},
                               best={"chemistry": 0.55, "physics": 0.55}, delta=delta, tau=0.2, mode="cognizance",
                               decision=dec, source="auto", reason=f"Δ={delta} vs τ=0.2", split="validation", k=2,
                               delta_se=0.125, score_se={"chemistry": 0.0625, "physics": 0.0625},
                               n_items={"chemistry": 16, "physics": 16}))
    question = "Which gas is produced when zinc reacts with hydrochloric acid? (see Hydrogen bonding)"
    if xss:
        question = f"Which gas {XSS} is produced when zinc reacts with hydrochloric acid?"
    prompt = Prompt(run_id=rid, item_key="chem-001", domain="chemistry", split="train", question=question,
                    choices=["Oxygen", "Hydrogen", "Chlorine", "Nitrogen"], labels=["A", "B", "C", "D"], gold="B")
    session.add(prompt)
    session.flush()
    exchanges: list[int] = []
    kept_id = None
    for g in range(steps):
        step = Step(run_id=rid, round=1, direction=1, step=g, global_step=g, tutee="phys", tutor="chem",
                    loss=0.5 - 0.05 * g,
                    metrics={"loss/jsd": 0.5 - 0.05 * g, "anchoring/kept_rate": 0.5 + 0.1 * g, "anchoring/kept": 2.0,
                             "anchoring/no_match": 1.0, "anchoring/feedback": 3.0, "break/rate": 0.25,
                             "throughput/rollout_tokens_per_s": 100.0 + g, "rollout/accuracy": 0.5,
                             "rollout/finish_eos": 0.75, "rollout/finish_stop": 0.0, "rollout/finish_length": 0.25,
                             "rollout/parse_failure": 0.25, "rollout/mean_length": 18.0 + g,
                             "train/weight_l2": 0.01 * (g + 1)})
        session.add(step)
        session.flush()
        session.add(Event(run_id=rid, type="step", ref_id=step.id, payload={"global_step": g}))
        for k in range(per_step):
            text = f"The answer is hydrogen gas. Answer: B (step {g}, sample {k})"
            if xss:
                text = f"Rollout {XSS} thinking. Answer: B"
            correct = k % 2 == 0
            ro = Rollout(run_id=rid, step_id=step.id, student="phys", prompt_id=prompt.id, prompt_index=0,
                         rollout_index=k, text=text, token_ids=list(range(len(_tokens(text)))),
                         answer="B" if correct else "A", correct=correct)
            session.add(ro)
            session.flush()
            category = "kept" if k != 1 else "no_match"
            raw = "<concept>hydrogen</concept> Think about what bubbles off the metal."
            if xss:
                raw = f"<concept>zinc</concept> {XSS}"
            fb = Feedback(rollout_id=ro.id, tutor="chem", raw=raw,
                          concept="hydrogen" if not xss else "zinc", category=category,
                          sanitised=("Think about what bubbles off the metal." if not xss else f"Feedback {XSS}"),
                          redactions=[], used_text=None, source="model")
            if category == "kept":
                fb.used_text = fb.sanitised
            session.add(fb)
            session.flush()
            toks = _tokens(text)
            div = [0.01 * (i % 7) for i in range(len(toks))]
            div_s = [0.012 * (i % 5) for i in range(len(toks))]
            ex = Exchange(run_id=rid, key=f"r1-d1-s{g}-p0-k{k}", step_id=step.id, rollout_id=ro.id, feedback_id=fb.id,
                          round=1, direction=1, global_step=g, tutee="phys", tutor="chem", domain="chemistry",
                          correct=correct, category=category, s_index=(k + 2) % per_step if correct else None,
                          s_text="Zinc displaces hydrogen. Answer: B" if correct else None,
                          context_used="s+f" if category == "kept" and correct else "s",
                          finish_reason="length" if k == 1 else "eos",
                          teacher_context=f"Question: {question}\nA correct solution: ...\nFeedback: {fb.sanitised}",
                          tokens=toks, student_logprob=[-0.5] * len(toks), divergence=div, divergence_s_only=div_s,
                          loss=sum(div) / len(div))
            session.add(ex)
            session.flush()
            session.add(Event(run_id=rid, type="exchange", ref_id=ex.id, payload={"key": ex.key}))
            exchanges.append(ex.id)
            if category == "kept" and correct and kept_id is None:
                kept_id = ex.id
        session.add(BreakSample(run_id=rid, exchange_key=f"r1-d1-s{g}-p0-k0", round=1, direction=1, global_step=g,
                                tutee="phys", tutor="chem", tutor_cognizant=True, difficulty="easy",
                                context="s+f", baseline="s", correct_with_f=g % 4 != 0,
                                correct_without_f=g % 3 != 2, broken=g % 3 != 2 and g % 4 == 0))
    ckpt = Checkpoint(run_id=rid, tag="step-3", path=f"/tmp/opcod-ckpt/{rid}/step-3", next_task=5, round=1)
    session.add(ckpt)
    session.add(Override(run_id=rid, exchange_id=None, kind="set_tau", payload={"value": 0.3}, author="api",
                         status="applied", applied_at=now, applied_at_step=2))
    ap = Approval(run_id=rid, exchange_key=f"r1-d1-s{steps - 1}-p0-k0", status="pending",
                  deadline=now + timedelta(seconds=300),
                  payload={"tutee": "phys", "tutor": "chem", "domain": "chemistry", "question": question,
                           "rollout_text": "Answer: B", "correct": True, "concept": "hydrogen",
                           "feedback_raw": "<concept>hydrogen</concept> hint",
                           "feedback_sanitised": "Think about the gas." if not xss else f"Approval {XSS}"})
    session.add(ap)
    session.flush()
    replay_id = None
    if with_replay and kept_id is not None:
        kex = session.get(Exchange, kept_id)
        n = len(kex.tokens)
        rp = Replay(run_id=rid, exchange_id=kept_id, inputs={"feedback": "Consider the gas.", "tutor_checkpoint": None},
                    status="done", finished_at=now,
                    result={"tokens": kex.tokens,
                            "before": {"divergence": list(kex.divergence), "mean_divergence": kex.loss,
                                       "answer_distribution": {"A": 0.2, "B": 0.6, "C": 0.1, "D": 0.1},
                                       "feedback": "Think about what bubbles off the metal.", "context_used": "s+f"},
                            "after": {"divergence": [0.02] * n, "mean_divergence": 0.02,
                                      "answer_distribution": {"A": 0.1, "B": 0.8, "C": 0.05, "D": 0.05},
                                      "feedback": "Consider the gas.", "context_used": "s+f"},
                            "effect": [0.02 - v for v in kex.divergence], "generated_feedback": None})
        session.add(rp)
        session.flush()
        replay_id = rp.id
    session.commit()
    return {"run": rid, "exchanges": exchanges, "kept": kept_id, "approval": ap.id, "replay": replay_id,
            "checkpoint": ckpt.id, "prompt": prompt.id}


def test_seed_writes_a_consistent_run(session):
    ids = seed_run(session, steps=2, per_step=2)
    run = session.get(Run, ids["run"])
    assert run is not None and [s.name for s in run.students] == ["chem", "phys"]
    assert len(ids["exchanges"]) == 4 and ids["kept"] in ids["exchanges"]
    ex = session.get(Exchange, ids["kept"])
    assert len(ex.tokens) == len(ex.divergence) == len(ex.divergence_s_only)
