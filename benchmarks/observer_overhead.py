"""Observer overhead: a tiny training run recorded into the database by the worker's recorder against the
same run with a null observer.

    python benchmarks/observer_overhead.py [--steps 8] [--reps 3] [--threads 1]
                                           [--cache-dir DIR] [--quick] [--no-record]

Each side trains the tiny preset (1 round x ``--steps`` steps per direction, same seed) in a fresh
process state: ``db`` through ``WorkerTrainer`` with ``app.worker.recorder.Recorder`` on a fresh migrated
database (a run held by a worker row, as ``opcod serve`` runs it; the recorder flushes a transaction per
step and before each checkpoint), ``null`` through ``Trainer`` with ``NullObserver``. The figure is the
wall time per step between the first and the last step event, taken after the observer has handled the
event (so it includes the recording, which a step's own ``time/step`` metric does not), and the time
spent inside the observer's ``on_event`` over that wall time (the recorder's share, measured directly:
the two runs' difference is within their run-to-run spread on a shared machine). Sides are alternated
(null, db, db, null, ...); medians. Prints JSON (seconds per step, overhead = db / null - 1, the
recorder's share; goal < 3%) and appends a line to docs/benchmarks.md. ``--quick``: 2 steps per direction, one run per
side, nothing recorded (the test suite's smoke run).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))

from record import machine, record  # noqa: E402
from store.synth import Shape, held_run  # noqa: E402


class StepClock:
    """Forwards every event to ``inner``, notes the time each step event was handled and adds up the time
    spent inside ``inner`` between the first and the last step event."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.times: list[float] = []
        self.inside: list[tuple[float, float]] = []   # (end, seconds inside the observer) per event after the first step

    def on_event(self, event) -> None:
        t0 = time.perf_counter()
        self.inner.on_event(event)
        t1 = time.perf_counter()
        if self.times:
            self.inside.append((t1, t1 - t0))
        if event.type == "step":
            self.times.append(t1)

    def observer_share(self) -> float:
        """Time inside the observer over the wall time, between the first and the last step event."""
        return sum(dt for end, dt in self.inside if end <= self.times[-1]) / (self.times[-1] - self.times[0])

    def per_step(self) -> float:
        if len(self.times) < 3:
            raise RuntimeError(f"{len(self.times)} steps: too few to time")
        return (self.times[-1] - self.times[0]) / (len(self.times) - 1)


def one_run(side: str, steps: int, workdir: Path, cache: Path) -> tuple[float, float]:
    from opcod_core.config import preset
    from opcod_core.observer import NullObserver
    from opcod_core.trainer import Trainer

    config = preset("tiny", {"schedule": {"rounds": 1, "steps_per_direction": steps}})
    out = Path(tempfile.mkdtemp(dir=workdir, prefix=f"{side}-"))
    if side == "null":
        clock = StepClock(NullObserver())
        trainer = Trainer(config, out / "run", observer=clock, cache_dir=cache)
    else:
        from app.db import make_engine, session_factory, upgrade
        from app.worker.recorder import Recorder
        from app.worker.trainer import WorkerTrainer

        url = f"sqlite:///{out / 'opcod.db'}"
        upgrade(url)
        engine = make_engine(url)
        run_id, worker_id = held_run(engine, Shape(exchanges=1), "observer", config.to_dict())
        recorder = Recorder(session_factory(engine), run_id, worker_id, out_dir=out / "run")
        clock = StepClock(recorder)
        trainer = WorkerTrainer(config, out / "run", observer=clock, cache_dir=cache)
        trainer.recorder = recorder
    try:
        result = trainer.run()
    finally:
        trainer.close()
    if result.status != "finished":
        raise RuntimeError(f"{side}: the run ended {result.status}")
    return clock.per_step(), clock.observer_share()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=8, help="steps per direction (one round)")
    ap.add_argument("--reps", type=int, default=3, help="runs per side")
    ap.add_argument("--threads", type=int, default=1, help="torch threads")
    ap.add_argument("--cache-dir", default=None, help="warm-up and model cache (default: the command line's)")
    ap.add_argument("--quick", action="store_true", help="2 steps per direction, one run per side (smoke)")
    ap.add_argument("--no-record", action="store_true", help="do not append to docs/benchmarks.md")
    args = ap.parse_args(argv)
    if args.quick:
        args.steps, args.reps, args.no_record = 2, 1, True
    import torch

    from opcod_core.paths import default_cache_dir

    threads_before = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _measure(args, argv, Path(args.cache_dir) if args.cache_dir else default_cache_dir())
    finally:  # a caller in the same process (the test suite) keeps its own thread count
        torch.set_num_threads(threads_before)


def _measure(args, argv: list[str] | None, cache: Path) -> int:
    order = []
    for i in range(args.reps):
        order += ["null", "db"] if i % 2 == 0 else ["db", "null"]
    times: dict[str, list[float]] = {"null": [], "db": []}
    inside: dict[str, list[float]] = {"null": [], "db": []}
    with tempfile.TemporaryDirectory(prefix="opcod-bench-observer-") as tmp:
        for side in order:
            per_step, share = one_run(side, args.steps, Path(tmp), cache)
            times[side].append(per_step)
            inside[side].append(share)
            print(f"{side}: {per_step:.3f} s/step, {share:.2%} inside the observer", file=sys.stderr, flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {"machine": machine(), "threads": args.threads, "steps": 2 * args.steps,
              "null_s_per_step": round(med["null"], 4), "db_s_per_step": round(med["db"], 4),
              "overhead": round(med["db"] / med["null"] - 1, 4),
              "recorder_share": round(statistics.median(inside["db"]), 4),
              "runs": {k: [round(x, 4) for x in v] for k, v in times.items()}}
    print(json.dumps(result))
    if not args.no_record:
        cmd = "python benchmarks/observer_overhead.py " + " ".join(argv if argv is not None else sys.argv[1:])
        record("Observer overhead", cmd.strip(),
               f"tiny, {2 * args.steps} steps, {args.threads} thread(s): null observer {result['null_s_per_step']} s/step, "
               f"database recorder {result['db_s_per_step']} s/step, overhead {result['overhead']:+.1%}, time "
               f"inside the recorder {result['recorder_share']:.2%} of the wall time "
               f"(runs: null {result['runs']['null']}, db {result['runs']['db']})")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    raise SystemExit(main())
