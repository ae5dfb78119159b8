"""A synthetic run of N exchanges written straight into the migrated schema with ``executemany``.

Why not through the worker's recorder: a million exchanges through the recorder's unit of work would take
most of an hour on this machine, and the store benchmark measures reads. The rows are the recorder's rows
(the same tables and columns, every per-token array packed as the ORM packs it, one ``event`` row per
exchange, step, break probe and gate), with realistic sizes: rollouts of ``tokens`` tokens with their
token strings, log-probs and both divergence arrays, a teacher context of a few hundred characters, a step
every ``per_step`` exchanges with its metric rows, four break probes per step, gate and eval rows per
round. Ids are assigned here (so foreign keys need no round trip); PostgreSQL's sequences are moved past
them afterwards, so the app can write after it. The same writer is the "raw executemany" side of the
ingest benchmark (``benchmarks/ingest.py``).
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Iterator

from sqlalchemy import insert, text
from sqlalchemy.engine import Connection

from app.models import (BreakSample, EvalResult, Event, Exchange, Feedback, GateRecord, Metric, Prompt, Rollout, Run,
                        Step, Student)
from app.types import utcnow
from opcod_core.config import preset

DOMAINS = ("chemistry", "physics")
STUDENTS = ("chem", "phys")
CATEGORIES = ("kept", "kept", "no_match", "empty", None)   # None: no feedback (the gate muted the tutor)
STEP_METRICS = ("loss/jsd", "anchoring/kept", "anchoring/no_match", "anchoring/empty", "anchoring/kept_rate",
                "break/rate", "throughput/rollout_tokens_per_s", "rollout/accuracy", "rollout/finish_eos",
                "rollout/finish_stop", "rollout/finish_length", "rollout/parse_failure", "rollout/mean_length",
                "train/weight_l2", "train/grad_norm", "train/trained", "gate/delta", "time/step", "time/rollout",
                "time/train")
WORDS = ("the", "valence", "electrons", "of", "oxygen", "are", "six", "so", "two", "bonds", "form", "answer",
         "force", "mass", "times", "acceleration", "newton", "energy", "is", "conserved", "hence", "B", "C")
CHUNK = 5_000


@dataclass(frozen=True)
class Shape:
    """How big and how shaped the synthetic run is."""

    exchanges: int
    per_step: int = 64          # exchanges per training step (4 prompts x 4 rollouts x 4: a sciworld-sized step)
    tokens: int = 48            # tokens per rollout (each with its string, log-prob and two divergences)
    prompts: int = 512          # distinct dataset items
    steps_per_direction: int = 50
    break_probes: int = 4       # break-rate probes per step
    seed: int = 0

    @property
    def steps(self) -> int:
        return -(-self.exchanges // self.per_step)

    @property
    def rounds(self) -> int:
        return -(-self.steps // (2 * self.steps_per_direction))


def _sentence(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


def _position(shape: Shape, g: int) -> tuple[int, int, int]:
    """(round, direction, step within the direction) of global step ``g`` (0-based)."""
    k = shape.steps_per_direction
    return g // (2 * k) + 1, (g // k) % 2 + 1, g % k


def create_run(conn: Connection, shape: Shape, name: str = "store-bench") -> int:
    """The run row (a finished sciworld-like run of ``shape.rounds`` rounds) and its two students."""
    cfg = preset("tiny", {"name": name, "schedule": {"rounds": shape.rounds,
                                                     "steps_per_direction": shape.steps_per_direction}}).to_dict()
    now = utcnow()
    run_id = conn.execute(insert(Run).values(
        name=name, preset="tiny", config=cfg, status="finished", total_tasks=shape.steps, next_task=shape.steps,
        created_at=now - timedelta(hours=2), started_at=now - timedelta(hours=2), finished_at=now,
        progress={"round": shape.rounds, "direction": 2, "step": shape.steps_per_direction - 1,
                  "global_step": shape.steps}).returning(Run.id)).scalar_one()
    conn.execute(insert(Student), [{"run_id": run_id, "position": i, "name": n, "model_ref": "tiny:llama",
                                    "strong_domain": d} for i, (n, d) in enumerate(zip(STUDENTS, DOMAINS))])
    return run_id


TABLES = (Prompt, Step, Metric, Rollout, Feedback, Exchange, BreakSample, Event)


def held_run(engine, shape: Shape, name: str, config: dict | None = None) -> tuple[int, int]:
    """(run id, worker id): a running run held by a worker row, as a worker holds one (the recorder's
    fence checks both)."""
    from sqlalchemy import update

    from app.db import session_factory
    from app.worker.claim import register_worker

    worker_id = register_worker(session_factory(engine), f"bench-{name}")
    with engine.begin() as conn:
        run_id = create_run(conn, shape, name=name)
        values = {"status": "running", "worker_id": worker_id, "heartbeat_at": utcnow()}
        if config is not None:
            values["config"] = config
        conn.execute(update(Run).where(Run.id == run_id).values(**values))
    return run_id, worker_id


def ids_after(conn: Connection) -> dict[str, int]:
    """The largest id of each table ``step_rows`` writes (0 when empty)."""
    return {t.__tablename__: conn.execute(text(f"SELECT COALESCE(MAX(id), 0) FROM {t.__tablename__}")).scalar_one()
            for t in TABLES}


def move_sequences(conn: Connection) -> None:
    """PostgreSQL: every sequence past the ids written here (the app's own inserts come after them)."""
    if conn.dialect.name == "postgresql":
        for t in TABLES:
            conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{t.__tablename__}', 'id'), "
                              f"(SELECT COALESCE(MAX(id), 1) FROM {t.__tablename__}))"))


def step_rows(shape: Shape, run_id: int, base: dict[str, int],
              steps_per_chunk: int | None = None) -> Iterator[tuple[Any, list[dict]]]:
    """(table, rows) chunks in foreign-key order: prompts, then per block of ``steps_per_chunk`` steps
    (default: about ``CHUNK`` exchanges) its steps, metrics, rollouts, feedback, exchanges, break probes
    and events; ``base``: the largest id already in each table."""
    rng = random.Random(shape.seed)
    now = utcnow()
    prompt_ids = [base["prompt"] + i + 1 for i in range(shape.prompts)]
    yield Prompt, [{"id": pid, "run_id": run_id, "item_key": f"item-{i}", "domain": DOMAINS[i % 2], "split": "train",
                    "answer_type": "numeric", "question": f"How many valence electrons does item {i} have? "
                    + _sentence(rng, 14), "choices": [], "labels": [], "gold": str(i % 40)}
                   for i, pid in enumerate(prompt_ids)]
    ids = {k: base[k] for k in ("step", "rollout", "feedback", "exchange", "event", "metric", "break_sample")}
    steps_per_chunk = steps_per_chunk or max(1, CHUNK // shape.per_step)
    for g0 in range(0, shape.steps, steps_per_chunk):
        steps, metrics, rollouts, feedback, exchanges, breaks, events = [], [], [], [], [], [], []
        for g in range(g0, min(shape.steps, g0 + steps_per_chunk)):
            rnd, direction, k = _position(shape, g)
            tutee, tutor = (STUDENTS[0], STUDENTS[1]) if direction == 1 else (STUDENTS[1], STUDENTS[0])
            ids["step"] += 1
            step_id = ids["step"]
            m = {key: round(rng.random(), 4) for key in STEP_METRICS}
            steps.append({"id": step_id, "run_id": run_id, "round": rnd, "direction": direction, "step": k,
                          "global_step": g + 1, "tutee": tutee, "tutor": tutor, "loss": m["loss/jsd"], "metrics": m})
            for key, v in m.items():
                ids["metric"] += 1
                metrics.append({"id": ids["metric"], "run_id": run_id, "global_step": g + 1, "key": key, "value": v})
            n = min(shape.per_step, shape.exchanges - g * shape.per_step)
            for j in range(n):
                i = g * shape.per_step + j
                ids["rollout"] += 1
                p = rng.randrange(shape.prompts)
                correct = rng.random() < 0.5
                toks = [rng.choice(WORDS) for _ in range(shape.tokens)]
                rollouts.append({"id": ids["rollout"], "run_id": run_id, "step_id": step_id, "student": tutee,
                                 "prompt_id": prompt_ids[p], "prompt_index": j // 4, "rollout_index": j % 4,
                                 "text": " ".join(toks), "token_ids": [rng.randrange(49_152) for _ in toks],
                                 "answer": str(p % 40), "correct": correct})
                category = CATEGORIES[i % len(CATEGORIES)]
                fb_id = None
                if category is not None:
                    ids["feedback"] += 1
                    fb_id = ids["feedback"]
                    raw = f"<concept>valence</concept> {_sentence(rng, 20)}"
                    feedback.append({"id": fb_id, "rollout_id": ids["rollout"], "tutor": tutor, "raw": raw,
                                     "concept": "valence", "category": category, "sanitised": raw[25:],
                                     "redactions": [], "used_text": raw[25:] if category == "kept" else None,
                                     "source": "model"})
                ids["exchange"] += 1
                key = f"r{rnd}-d{direction}-s{k}-p{j // 4}-k{j % 4}"
                exchanges.append({
                    "id": ids["exchange"], "run_id": run_id, "key": key, "step_id": step_id,
                    "rollout_id": ids["rollout"], "feedback_id": fb_id, "round": rnd, "direction": direction,
                    "global_step": g + 1, "tutee": tutee, "tutor": tutor, "domain": DOMAINS[p % 2],
                    "correct": correct, "category": category, "human_edited": i % 1000 == 999,
                    "s_index": j % 4, "s_text": _sentence(rng, 30), "context_used": "s+f" if category else "s",
                    "finish_reason": ("eos", "stop", "length")[i % 3], "skipped": False,
                    "teacher_context": _sentence(rng, 60), "tokens": toks,
                    "student_logprob": [-rng.random() * 3 for _ in toks],
                    "divergence": [rng.random() * 0.5 for _ in toks],
                    "divergence_s_only": [rng.random() * 0.5 for _ in toks],
                    "loss": rng.random() * 0.3, "created_at": now})
                ids["event"] += 1
                events.append({"id": ids["event"], "run_id": run_id, "type": "exchange", "ref_id": ids["exchange"],
                               "payload": {"key": key, "round": rnd, "direction": direction, "global_step": g + 1,
                                           "domain": DOMAINS[p % 2], "correct": correct, "category": category,
                                           "tutee": tutee, "human": False}, "created_at": now})
            for b in range(shape.break_probes):
                ids["break_sample"] += 1
                without = rng.random() < 0.6
                broken = without and rng.random() < 0.2
                breaks.append({"id": ids["break_sample"], "run_id": run_id, "exchange_key": f"r{rnd}-d{direction}-s{k}-p{b}-k0",
                               "round": rnd, "direction": direction, "global_step": g + 1, "tutee": tutee, "tutor": tutor,
                               "tutor_cognizant": direction == 1, "difficulty": ("easy", "hard")[b % 2],
                               "context": "s+f", "baseline": "s", "correct_with_f": without and not broken,
                               "correct_without_f": without, "broken": broken, "created_at": now})
                ids["event"] += 1
                events.append({"id": ids["event"], "run_id": run_id, "type": "break", "ref_id": ids["break_sample"],
                               "payload": {"round": rnd, "direction": direction, "global_step": g + 1,
                                           "broken": broken, "eligible": without}, "created_at": now})
            ids["event"] += 1
            events.append({"id": ids["event"], "run_id": run_id, "type": "step", "ref_id": step_id,
                           "payload": {"round": rnd, "direction": direction, "global_step": g + 1, "step": k,
                                       "tutee": tutee, "tutor": tutor, "loss": m["loss/jsd"]}, "created_at": now})
        yield Step, steps
        yield Metric, metrics
        yield Rollout, rollouts
        yield Feedback, feedback
        yield Exchange, exchanges
        yield BreakSample, breaks
        yield Event, events


def _round_rows(shape: Shape, run_id: int) -> Iterator[tuple[Any, list[dict]]]:
    gates, evals = [], []
    for rnd in range(shape.rounds + 1):
        for i, st in enumerate(STUDENTS):
            scores = {d: 0.3 + 0.5 * (d == DOMAINS[i]) + 0.01 * rnd for d in DOMAINS}
            evals += [{"run_id": run_id, "round": rnd, "student": st, "domain": d, "split": split, "k": 4,
                       "accuracy": v, "n_items": 256} for d, v in scores.items() for split in ("val", "test")]
            if rnd < shape.rounds:
                gates.append({"run_id": run_id, "round": rnd + 1, "student": st, "scores": scores, "best": scores,
                              "delta": 0.1 * i, "tau": 0.2, "mode": "fixed", "decision": "tutor", "source": "auto",
                              "reason": "delta <= tau", "split": "val", "k": 4})
    yield GateRecord, gates
    yield EvalResult, evals


def write_run(conn: Connection, shape: Shape, run_id: int, progress=None) -> dict[str, int]:
    """Every row of the synthetic run, inserted with ``executemany`` in chunks; rows written per table."""
    counts: dict[str, int] = {}
    for table, rows in itertools.chain(_round_rows(shape, run_id), step_rows(shape, run_id, ids_after(conn))):
        if rows:
            conn.execute(insert(table.__table__), rows)
            counts[table.__tablename__] = counts.get(table.__tablename__, 0) + len(rows)
            if progress is not None and table is Exchange:
                progress(counts["exchange"])
    move_sequences(conn)
    return counts
