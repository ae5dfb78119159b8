"""Ingest: exchanges per second through the worker's recorder against raw ``executemany`` of the same
rows into the same schema.

    python benchmarks/ingest.py [--exchanges 20000] [--backends sqlite,postgres] [--reps 2] [--quick]
                                [--no-record]

The content is the store benchmark's synthetic run (``benchmarks/store/synth.py``: a step per 64
exchanges with per-token arrays, metric rows, four break probes and event rows per step). The recorder
side (``app.worker.recorder.Recorder``, the database observer a worker runs) gets it as the trainer's
events (exchange, break and step events, built before the clock starts) and writes one fenced
transaction per step, as in a run. The raw side inserts the very rows the recorder writes, table by
table with one ``executemany`` each, also one transaction per step. Each repetition writes into a fresh
database, sides alternated (raw, recorder, recorder, raw, ...). Prints JSON (exchanges/s of each side,
medians, and recorder / raw; goal >= 0.5) and appends a line per backend to docs/benchmarks.md.
``--quick``: 640 exchanges, one repetition (the test suite's smoke run).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT))

from record import machine, record  # noqa: E402
from store.backends import backend_server, unknown_backends  # noqa: E402
from store.synth import Shape, held_run, ids_after, move_sequences, step_rows  # noqa: E402


def chunks_of(shape: Shape) -> tuple[list[dict], list[dict[str, list[dict]]]]:
    """The prompts the rollouts use and, per step, its rows by table name (ids counted from an empty
    database; a prompt's id is kept, so the raw side inserts the used ones with their ids)."""
    zero = {k: 0 for k in ("prompt", "step", "metric", "rollout", "feedback", "exchange", "break_sample", "event")}
    it = step_rows(shape, 1, zero, steps_per_chunk=1)
    _table, prompts = next(it)
    steps: list[dict[str, list[dict]]] = []
    for table, rows in it:
        if table.__tablename__ == "step":
            steps.append({})
        steps[-1][table.__tablename__] = rows
    used = {r["prompt_id"] for chunk in steps for r in chunk["rollout"]}
    return [p for p in prompts if p["id"] in used], steps


def events_of(prompts: list[dict], steps: list[dict[str, list[dict]]]) -> list:
    """The trainer events whose recording gives those rows: per step its exchanges, break probes, step."""
    from opcod_core import events as ev

    by_prompt = {p["id"]: p for p in prompts}
    out = []
    for chunk in steps:
        st = chunk["step"][0]
        pos = {k: st[k] for k in ("round", "direction", "step", "global_step", "tutee", "tutor")}
        fb_by_rollout = {f["rollout_id"]: f for f in chunk.get("feedback", [])}
        rollouts = {r["id"]: r for r in chunk["rollout"]}
        for e in chunk["exchange"]:
            r = rollouts[e["rollout_id"]]
            p = by_prompt[r["prompt_id"]]
            f = fb_by_rollout.get(r["id"], {})
            out.append(ev.ExchangeEvent(
                **pos, key=e["key"], domain=e["domain"], prompt_id=p["item_key"], question=p["question"], gold=p["gold"],
                prompt_index=r["prompt_index"], rollout_index=r["rollout_index"], rollout_text=r["text"],
                token_ids=r["token_ids"], finish_reason=e["finish_reason"], answer=r["answer"], correct=e["correct"],
                s_index=e["s_index"], s_text=e["s_text"], feedback_raw=f.get("raw"), concept=f.get("concept"),
                category=e["category"], feedback_sanitised=f.get("sanitised"), feedback_used=f.get("used_text"),
                context_used=e["context_used"], teacher_context=e["teacher_context"], tokens=e["tokens"],
                divergence=e["divergence"], divergence_s_only=e["divergence_s_only"],
                student_logprob=e["student_logprob"], loss=e["loss"]))
        for b in chunk.get("break_sample", []):
            out.append(ev.BreakEvent(**pos, exchange_key=b["exchange_key"], domain="physics",
                                     tutor_cognizant=b["tutor_cognizant"], difficulty=b["difficulty"],
                                     context=b["context"], baseline=b["baseline"], correct_with_f=b["correct_with_f"],
                                     correct_without_f=b["correct_without_f"], eligible=b["correct_without_f"],
                                     broken=b["broken"]))
        out.append(ev.StepEvent(**pos, loss=st["loss"], metrics=st["metrics"]))
    return out


def raw_side(engine, shape: Shape, prompts, steps) -> float:
    """Seconds to insert the rows table by table with ``executemany``, one transaction per step."""
    from sqlalchemy import insert

    from app.models import BreakSample, Event, Exchange, Feedback, Metric, Prompt, Rollout, Step

    run_id, _ = held_run(engine, shape, "ingest")
    tables = {"step": Step, "metric": Metric, "rollout": Rollout, "feedback": Feedback, "exchange": Exchange,
              "break_sample": BreakSample, "event": Event}
    with engine.connect() as conn:
        if ids_after(conn)["exchange"] != 0:
            raise RuntimeError("the raw side needs an empty database (its ids are precomputed)")
        fix = (lambda rows: [{**r, "run_id": run_id} if "run_id" in r else r for r in rows])
        t0 = time.perf_counter()
        conn.execute(insert(Prompt.__table__), fix(prompts))
        conn.commit()
        for chunk in steps:
            for name, table in tables.items():
                if chunk.get(name):
                    conn.execute(insert(table.__table__), fix(chunk[name]))
            conn.commit()
        took = time.perf_counter() - t0
        move_sequences(conn)
        conn.commit()
    return took


def recorder_side(engine, shape: Shape, events, out_dir: Path) -> float:
    """Seconds for the worker's recorder to write the events (it flushes one transaction per step)."""
    from app.db import session_factory
    from app.worker.recorder import Recorder

    run_id, worker_id = held_run(engine, shape, "ingest")
    rec = Recorder(session_factory(engine), run_id, worker_id, out_dir=out_dir)
    t0 = time.perf_counter()
    for e in events:
        rec.on_event(e)
    rec.flush()
    return time.perf_counter() - t0


def row_counts(engine) -> dict[str, int]:
    """Rows per table the sides write (both must write the same)."""
    from sqlalchemy import text

    with engine.connect() as conn:
        return {t: conn.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar_one()
                for t in ("prompt", "step", "metric", "rollout", "feedback", "exchange", "break_sample", "event")}


def measure(backend: str, shape: Shape, reps: int, tmp: Path, server=None, log=print) -> dict:
    from app.db import make_engine, upgrade

    prompts, steps = chunks_of(shape)
    events = events_of(prompts, steps)
    times: dict[str, list[float]] = {"raw": [], "recorder": []}
    rows: dict[str, dict[str, int]] = {}
    order = [side for _ in range(reps) for side in ("raw", "recorder")]
    order = [s for i in range(0, len(order), 4) for s in (order[i:i + 2] + list(reversed(order[i + 2:i + 4])))]
    for i, side in enumerate(order):
        name = f"opcod_ingest_{uuid.uuid4().hex[:8]}"
        url = f"sqlite:///{tmp / (name + '.db')}" if backend == "sqlite" else server.create_database(name)
        upgrade(url)
        engine = make_engine(url)
        try:
            took = raw_side(engine, shape, prompts, steps) if side == "raw" else \
                recorder_side(engine, shape, events, tmp / name)
            rows[side] = row_counts(engine)
        finally:
            engine.dispose()
            if backend == "sqlite":
                (tmp / (name + ".db")).unlink(missing_ok=True)
            else:
                server.drop_database(name)
        times[side].append(took)
        log(f"{backend} {side}: {shape.exchanges / took:,.0f} exchanges/s")
    if rows["raw"] != rows["recorder"]:
        raise RuntimeError(f"the sides wrote different rows: raw {rows['raw']}, recorder {rows['recorder']}")
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"rows": rows["raw"], "exchanges": shape.exchanges, "steps": shape.steps,
            "raw_exchanges_per_s": round(shape.exchanges / med["raw"]),
            "recorder_exchanges_per_s": round(shape.exchanges / med["recorder"]),
            "recorder_over_raw": round(med["raw"] / med["recorder"], 3),
            "seconds": {k: [round(x, 2) for x in v] for k, v in times.items()}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--exchanges", type=int, default=20_000)
    ap.add_argument("--backends", default="sqlite,postgres")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="640 exchanges, one repetition (smoke)")
    ap.add_argument("--no-record", action="store_true", help="do not append to docs/benchmarks.md")
    args = ap.parse_args(argv)
    backends = args.backends.split(",")
    if unknown_backends(backends):
        ap.error(f"--backends: unknown {unknown_backends(backends)} (sqlite, postgres)")
    shape = Shape(exchanges=640 if args.quick else args.exchanges)
    reps = 1 if args.quick else args.reps
    log = (lambda msg: print(msg, file=sys.stderr, flush=True))
    result: dict = {"machine": machine(), "backends": {}}
    with tempfile.TemporaryDirectory(prefix="opcod-bench-ingest-") as tmp:
        for backend in backends:
            with backend_server(backend) as server:
                result["backends"][backend] = measure(backend, shape, reps, Path(tmp), server, log)
    print(json.dumps(result))
    if not args.no_record:
        cmd = "python benchmarks/ingest.py " + " ".join(argv if argv is not None else sys.argv[1:])
        for backend, r in result["backends"].items():
            record("Ingest", cmd.strip(), f"{backend}: {r['exchanges']:,} exchanges in {r['steps']} steps: recorder "
                   f"{r['recorder_exchanges_per_s']:,}/s, raw executemany {r['raw_exchanges_per_s']:,}/s, "
                   f"recorder / raw x{r['recorder_over_raw']}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    raise SystemExit(main())
