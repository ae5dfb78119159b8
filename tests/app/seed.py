"""The one seeder of the app and browser tests: a run's trainer events (``opcod_core.events``) written
through the worker's real recorder (``app.worker.recorder.Recorder``), so the seeded rows are exactly the
rows a worker writes, and the web side's own inputs (an override, a pending approval, a replay) through
the rows the services and the worker controls write.

Two contents: ``style="varied"`` (the API tests: every filterable attribute varies with the exchange's
index ``i``: domain ``i % 2``, correct ``i % 3 == 0``, category ``CATEGORIES[i % 3]``, human-edited
``i % 5 == 4``, finish reason ``finish_of(i)``) and ``style="chemistry"`` (the pages: one realistic
chemistry question, break probes, per-token heatmaps; ``xss=True`` puts markup in every model text).
``seed_events`` records a test's own trainer events for any number of students (the flow matrix's tests).
"""

from __future__ import annotations

import itertools
import json
import tempfile
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from app.db import session_scope
from app.models import Approval, Checkpoint, Exchange, Override, Prompt, Replay, Run, Step, Student
from app.services.runs import total_tasks
from app.types import utcnow
from app.worker.claim import register_worker
from app.worker.recorder import Recorder
from opcod_core import events as ev
from opcod_core.config import preset

CATEGORIES = ("kept", "no_match", "empty")
FINISH = ("eos", "stop", "length", None)  # None: an exchange stored before finish reasons were recorded
XSS_SCRIPT = "<script>window.__xss=1</script>"
XSS_IMG = '<img src=x onerror="window.__xss=2">'
XSS = XSS_SCRIPT + " " + XSS_IMG


def finish_of(i: int) -> str | None:
    """The finish reason seeded on the i-th exchange (insertion order)."""
    return FINISH[i % len(FINISH)]


@dataclass
class Seeded:
    run_id: int
    exchange_ids: list[int] = field(default_factory=list)  # in insertion (id) order
    step_ids: list[int] = field(default_factory=list)
    checkpoint_id: int | None = None
    kept: int | None = None          # the first kept exchange with a correct rollout
    approval: int | None = None
    replay: int | None = None
    prompt: int | None = None

    def ids(self) -> dict:
        """The dashboard tests' names for the seeded rows."""
        return {"run": self.run_id, "exchanges": self.exchange_ids, "kept": self.kept, "approval": self.approval,
                "replay": self.replay, "checkpoint": self.checkpoint_id, "prompt": self.prompt}


def seed_run(db, *, name: str = "seeded", status: str = "running", steps: int = 4, per_step: int = 6,
             style: str = "varied", xss: bool = False, approval: str = "auto", gates: bool = True,
             with_replay: bool = False) -> Seeded:
    cfg = preset("tiny", {"name": name, "tutor": {"approval": approval}})
    run_id, worker_id = _held_run(db, name, cfg)
    events = _events_varied(cfg, steps, per_step, gates) if style == "varied" else \
        _events_chemistry(cfg, steps, per_step, xss)
    override_id = _web_input(db, run_id, Override(run_id=run_id, kind="set_tau", payload={"value": 0.3},
                                                  author="api")) if style == "chemistry" else None
    if override_id is not None:
        events.append(ev.OverrideEvent(id=str(override_id), kind="set_tau", value=0.3, author="api",
                                       applied_at_step=2, round=1))
    out_dir = Path(tempfile.mkdtemp(prefix=f"opcod-seed-run-{run_id}-"))
    events = [_on_disk(e, out_dir) if isinstance(e, ev.CheckpointEvent) else e for e in events]
    recorder = Recorder(db, run_id, worker_id, out_dir=out_dir)
    for e in events:
        recorder.on_event(e)
    recorder.flush()
    out = _collect(db, run_id)
    if style == "chemistry":
        out.approval = _web_input(db, run_id, Approval(
            run_id=run_id, exchange_key=f"r1-d1-s{steps - 1}-p0-k0", status="pending",
            deadline=utcnow() + timedelta(seconds=300),
            payload={"tutee": "phys", "tutor": "chem", "domain": "chemistry", "question": _question(xss),
                     "rollout_text": "Answer: B", "correct": True, "concept": "hydrogen",
                     "feedback_raw": "<concept>hydrogen</concept> hint",
                     "feedback_sanitised": "Think about the gas." if not xss else f"Approval {XSS}"}))
    if with_replay and out.kept is not None:
        out.replay = _replay(db, recorder, run_id, out.kept)
    with session_scope(db) as s:   # the run leaves the seeding "worker" in the state asked for
        run = s.get(Run, run_id)
        run.status, run.worker_id = status, (worker_id if status == "running" else None)
    return out


def dashboard_run(db, *, name: str = "seeded", status: str = "running", steps: int = 4, per_step: int = 3,
                  xss: bool = False, approval: str = "auto") -> dict:
    """The dashboard tests' run (chemistry content, a finished replay) and its ids by name."""
    return seed_run(db, name=name, status=status, steps=steps, per_step=per_step, style="chemistry", xss=xss,
                    approval=approval, with_replay=True).ids()


def seed_events(db, events: list[ev.Event], *, name: str = "events", students: tuple[str, ...] = ("chem", "phys"),
                domains: tuple[str, ...] = ("chemistry", "physics"), status: str = "finished",
                strong: tuple[str, ...] | None = None, models: tuple[str, ...] | None = None) -> Seeded:
    """A run of any number of ``students`` whose trainer events (after its ``run_start``) are ``events``,
    written through the recorder. The config and the student rows list every student, as a created run's
    do: student i is strong in ``strong[i]`` (default: the i-th domain, cyclically) on ``models[i]``
    (default: the tiny Llama and Qwen2 in turn)."""
    strong = strong or tuple(domains[i % len(domains)] for i in range(len(students)))
    models = models or tuple(("tiny:llama", "tiny:qwen2")[i % 2] for i in range(len(students)))
    # validated with stand-in names (a test's names may be markup a config refuses), stored with the real ones
    cfg = preset("tiny", {"name": name, "data": {"domains": list(domains)}, "students": [
        {"name": f"s{i}", "model": m, "strong_domain": d, "warmup_domains": [d]}
        for i, (m, d) in enumerate(zip(models, strong, strict=True))]})
    config = cfg.to_dict()
    config["students"] = [dict(st, name=n) for st, n in zip(config["students"], students, strict=True)]
    run_id, worker_id = _held_run(db, name, cfg, config=config,
                                  rows=tuple(zip(students, models, strong, strict=True)))
    recorder = Recorder(db, run_id, worker_id, out_dir=Path(tempfile.mkdtemp(prefix=f"opcod-seed-run-{run_id}-")))
    start = _start(cfg).model_copy(update={"config": config, "students": list(students), "domains": list(domains)})
    for e in [start, *events]:
        recorder.on_event(e)
    recorder.flush()
    with session_scope(db) as s:
        run = s.get(Run, run_id)
        run.status, run.worker_id = status, (worker_id if status == "running" else None)
    return _collect(db, run_id)


def _held_run(db, name: str, cfg, config: dict | None = None,
              rows: tuple[tuple[str, str, str], ...] | None = None) -> tuple[int, int]:
    """A run row as the services create it, held by a worker row (the recorder's fence checks both); its
    student rows are ``rows`` (name, model, strong domain), else the preset's two."""
    worker_id = register_worker(db, f"seed-{name}")
    now = utcnow()
    rows = rows or (("chem", "tiny:llama", cfg.students[0].strong_domain),
                    ("phys", "tiny:qwen2", cfg.students[1].strong_domain))
    with session_scope(db) as s:
        run = Run(name=name, preset="tiny", config=config or cfg.to_dict(), status="running", worker_id=worker_id,
                  heartbeat_at=now, total_tasks=total_tasks(cfg), started_at=now - timedelta(seconds=60),
                  created_at=now - timedelta(seconds=90))
        run.students = [Student(position=i, name=n, model_ref=m, strong_domain=d) for i, (n, m, d) in enumerate(rows)]
        s.add(run)
        s.flush()
        return run.id, worker_id


def _web_input(db, run_id: int, row) -> int:
    with session_scope(db) as s:
        s.add(row)
        s.flush()
        return row.id


def _start(cfg) -> ev.RunStartEvent:
    return ev.RunStartEvent(config=cfg.to_dict(), students=["chem", "phys"], domains=["chemistry", "physics"],
                            tasks=total_tasks(cfg), steps=2 * cfg.schedule.rounds * cfg.schedule.steps_per_direction)


def _events_varied(cfg, steps: int, per_step: int, gates: bool) -> list[ev.Event]:
    out: list[ev.Event] = [_start(cfg)]
    if gates:
        out += [ev.EvalEvent(round=r, student=st, domain=d, k=2, accuracy=0.25 + 0.1 * r, n_items=16)
                for r in (0, 1) for st in ("chem", "phys") for d in ("chemistry", "physics")]
        out += [ev.GateEvent(round=r, student=st, scores={"chemistry": 0.5, "physics": 0.4},
                             best={"chemistry": 0.5, "physics": 0.5}, delta=delta, tau=0.2, mode="cognizance",
                             decision="tutor" if delta <= 0.2 else "silent", k=2)
                for r in (1, 2) for st, delta in (("chem", 0.1), ("phys", 0.5))]
    counter = itertools.count()
    for g in range(steps):
        pos = {"round": 1 + g // 2, "direction": 1 + g % 2, "step": g % 2, "global_step": g,
               "tutee": ("chem", "phys")[g % 2], "tutor": ("phys", "chem")[g % 2]}
        for k in range(per_step):
            i = next(counter)
            domain, category = ("chemistry", "physics")[i % 2], CATEGORIES[i % 3]
            out.append(ev.ExchangeEvent(
                **pos, key=f"g{g}-p{k // 2}-r{k % 2}", domain=domain, prompt_id=f"{domain}-1",
                question=f"A {domain} question about entropy?", choices=["one", "two", "three", "four"],
                labels=["A", "B", "C", "D"], gold="B", prompt_index=k // 2, rollout_index=k % 2,
                rollout_text=f"reasoning {i}. Answer: B", token_ids=[1, 2, 3, i], finish_reason=finish_of(i),
                answer="B", correct=i % 3 == 0, s_index=0, s_text="a sibling",
                feedback_raw=f"<concept>entropy</concept> hint {i}", concept="entropy", category=category,
                feedback_sanitised=f"hint {i}", feedback_used=f"hint {i}" if category == "kept" else None,
                feedback_source="human" if i % 5 == 4 else "model", context_used="s+f",
                teacher_context="teacher ctx", tokens=["a", "b", "c", "d"], student_logprob=[-0.5, -1.0, -0.25, -2.0],
                divergence=[0.5, 0.25, 0.125, 1.0], divergence_s_only=[0.25, 0.25, 0.25, 0.5], loss=0.25))
        out.append(ev.StepEvent(**pos, loss=0.1 * g, metrics={"loss/jsd": 0.5 * g, "gate/delta": 0.5 * g}))
    out.append(_checkpoint(steps, len(out)))
    return out


def _on_disk(e: ev.CheckpointEvent, out_dir: Path) -> ev.CheckpointEvent:
    """The checkpoint written where a worker writes it (its directory and state.json exist, as after a save)."""
    path = out_dir / "checkpoints" / e.tag
    path.mkdir(parents=True, exist_ok=True)
    (path / "state.json").write_text(json.dumps({"next_task": e.next_task, "events_written": e.events_before}))
    return e.model_copy(update={"path": str(path)})


def _checkpoint(steps: int, events_before: int) -> ev.CheckpointEvent:
    return ev.CheckpointEvent(tag=f"step-{steps:06d}", path=f"/tmp/opcod-test/checkpoints/step-{steps:06d}",
                              next_task=steps, after=["step", 1, 1, steps - 1], events_before=events_before)


def _question(xss: bool) -> str:
    if xss:
        return f"Which gas {XSS} is produced when zinc reacts with hydrochloric acid?"
    return "Which gas is produced when zinc reacts with hydrochloric acid? (see Hydrogen bonding)"


def _tokens(text: str) -> list[str]:
    out, cur = [], ""
    for ch in text:
        cur += ch
        if ch == " " or len(cur) >= 4:
            out.append(cur)
            cur = ""
    return out + ([cur] if cur else [])


def _events_chemistry(cfg, steps: int, per_step: int, xss: bool) -> list[ev.Event]:
    out: list[ev.Event] = [_start(cfg)]
    for r, accs in ((0, {"chem": (0.50, 0.40), "phys": (0.30, 0.55)}), (1, {"chem": (0.55, 0.45), "phys": (0.35, 0.50)})):
        out += [ev.EvalEvent(round=r, student=st, domain=d, k=2, accuracy=acc, n_items=16)
                for st, (a, b) in accs.items() for d, acc in (("chemistry", a), ("physics", b))]
    out += [ev.GateEvent(round=1, student=st, scores={"chemistry": 0.5, "physics": 0.45},
                         best={"chemistry": 0.55, "physics": 0.55}, delta=delta, tau=0.2, mode="cognizance",
                         decision=dec, reason=f"Δ={delta} vs τ=0.2", k=2, delta_se=0.125,
                         score_se={"chemistry": 0.0625, "physics": 0.0625}, n_items={"chemistry": 16, "physics": 16})
            for st, delta, dec in (("chem", 0.05, "tutor"), ("phys", 0.35, "silent"))]
    question = _question(xss)
    for g in range(steps):
        pos = {"round": 1, "direction": 1, "step": g, "global_step": g, "tutee": "phys", "tutor": "chem"}
        for k in range(per_step):
            out.append(_chemistry_exchange(pos, g, k, per_step, question, xss))
        out.append(ev.BreakEvent(**pos, exchange_key=f"r1-d1-s{g}-p0-k0", domain="chemistry", tutor_cognizant=True,
                                 difficulty="easy", context="s+f", baseline="s", correct_with_f=g % 4 != 0,
                                 correct_without_f=g % 3 != 2, eligible=g % 3 != 2,
                                 broken=g % 3 != 2 and g % 4 == 0))
        out.append(ev.StepEvent(**pos, loss=0.5 - 0.05 * g, metrics={
            "loss/jsd": 0.5 - 0.05 * g, "anchoring/kept_rate": 0.5 + 0.1 * g, "anchoring/kept": 2.0,
            "anchoring/no_match": 1.0, "anchoring/feedback": 3.0, "break/rate": 0.25,
            "throughput/rollout_tokens_per_s": 100.0 + g, "rollout/accuracy": 0.5, "rollout/finish_eos": 0.75,
            "rollout/finish_stop": 0.0, "rollout/finish_length": 0.25, "rollout/parse_failure": 0.25,
            "rollout/mean_length": 18.0 + g, "train/weight_l2": 0.01 * (g + 1)}))
    out.append(_checkpoint(steps, len(out)))
    return out


def _chemistry_exchange(pos: dict, g: int, k: int, per_step: int, question: str, xss: bool) -> ev.ExchangeEvent:
    text = f"Rollout {XSS} thinking. Answer: B" if xss else \
        f"The answer is hydrogen gas. Answer: B (step {g}, sample {k})"
    correct, category = k % 2 == 0, ("kept" if k != 1 else "no_match")
    sanitised = f"Feedback {XSS}" if xss else "Think about what bubbles off the metal."
    toks = _tokens(text)
    div = [0.01 * (i % 7) for i in range(len(toks))]
    return ev.ExchangeEvent(
        **pos, key=f"r1-d1-s{g}-p0-k{k}", domain="chemistry", prompt_id="chem-001", question=question,
        choices=["Oxygen", "Hydrogen", "Chlorine", "Nitrogen"], labels=["A", "B", "C", "D"], gold="B",
        prompt_index=0, rollout_index=k, rollout_text=text, token_ids=list(range(len(toks))),
        finish_reason="length" if k == 1 else "eos", answer="B" if correct else "A", correct=correct,
        s_index=(k + 2) % per_step if correct else None,
        s_text="Zinc displaces hydrogen. Answer: B" if correct else None,
        feedback_raw=f"<concept>zinc</concept> {XSS}" if xss else
        "<concept>hydrogen</concept> Think about what bubbles off the metal.",
        concept="zinc" if xss else "hydrogen", category=category, feedback_sanitised=sanitised,
        feedback_used=sanitised if category == "kept" else None, feedback_source="model",
        context_used="s+f" if category == "kept" and correct else "s",
        teacher_context=f"Question: {question}\nA correct solution: ...\nFeedback: {sanitised}", tokens=toks,
        student_logprob=[-0.5] * len(toks), divergence=div, divergence_s_only=[0.012 * (i % 5) for i in range(len(toks))],
        loss=sum(div) / len(div))


def _collect(db, run_id: int) -> Seeded:
    with session_scope(db) as s:
        exchanges = list(s.execute(select(Exchange.id, Exchange.category, Exchange.correct)
                                   .where(Exchange.run_id == run_id).order_by(Exchange.id)))
        return Seeded(run_id, exchange_ids=[x.id for x in exchanges],
                      step_ids=list(s.scalars(select(Step.id).where(Step.run_id == run_id).order_by(Step.id))),
                      checkpoint_id=s.scalar(select(Checkpoint.id).where(Checkpoint.run_id == run_id)),
                      kept=next((x.id for x in exchanges if x.category == "kept" and x.correct), None),
                      prompt=s.scalar(select(Prompt.id).where(Prompt.run_id == run_id).order_by(Prompt.id).limit(1)))


def _replay(db, recorder: Recorder, run_id: int, exchange_id: int) -> int:
    """A replay the web side queued and the run's worker measured (``ReplayEvent`` through the recorder)."""
    with session_scope(db) as s:
        kex = s.get(Exchange, exchange_id)
        tokens, div, loss, key = list(kex.tokens), list(kex.divergence), kex.loss, kex.key
    rid = _web_input(db, run_id, Replay(run_id=run_id, exchange_id=exchange_id,
                                        inputs={"feedback": "Consider the gas.", "tutor_checkpoint": None}))
    n = len(tokens)
    recorder.on_event(ev.ReplayEvent(id=str(rid), exchange_key=key, status="done", result={
        "tokens": tokens,
        "before": {"divergence": div, "mean_divergence": loss, "answer_distribution": {"A": 0.2, "B": 0.6, "C": 0.1, "D": 0.1},
                   "feedback": "Think about what bubbles off the metal.", "context_used": "s+f"},
        "after": {"divergence": [0.02] * n, "mean_divergence": 0.02,
                  "answer_distribution": {"A": 0.1, "B": 0.8, "C": 0.05, "D": 0.05},
                  "feedback": "Consider the gas.", "context_used": "s+f"},
        "effect": [0.02 - v for v in div], "generated_feedback": None}))
    recorder.flush()
    return rid
