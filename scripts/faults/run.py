"""Kill a worker (SIGKILL) at each fault point of a run, let another worker take the run over, and check
that the run finishes with exactly the records of an uninterrupted run with the same seed.

    python scripts/faults/run.py [--database-url URL] [--points generation,backward,...] [--cache-dir DIR]

Prints one JSON line per point and a summary: whether the run finished, whether its records equal the
uninterrupted run's (steps, exchanges with texts, token ids and per-token arrays, gates, evaluations,
break samples, metric values), and how many exchanges were lost or duplicated. The SQLite database is a
temporary file unless ``--database-url`` names one (PostgreSQL: an empty database). The points are those
of ``scripts/faults/worker.py``; ``tests/app/test_worker_faults.py`` runs the same checks."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests" / "app"))

import worker_support as ws  # noqa: E402  (the tests' record comparison: one definition)
from worker import POINTS  # noqa: E402

from app.db import make_engine, session_factory, upgrade  # noqa: E402
from app.models import Exchange  # noqa: E402
from app.worker.loop import Worker  # noqa: E402


def fault_config():
    """The run every point is checked on: the tiny preset, 2 rounds x 2 steps per direction, a checkpoint
    every step (so the kills fall between, inside and around checkpoints)."""
    return ws.small_config(checkpoint_every=1)


def reference(factory, settings, engine) -> int:
    rid = ws.enqueue(factory, fault_config(), "uninterrupted")
    worker = Worker(settings, engine=engine)
    try:
        worker.run(once=True)
    finally:
        worker.close()
    assert ws.get_run(factory, rid).status == "finished", ws.get_run(factory, rid).error
    return rid


def check_point(point: str, n: int, factory, settings, engine, env: dict, ref: int, log_dir: Path,
                timeout_s: float = 900.0) -> dict:
    """One fault: the fault worker dies at ``point`` (its ``n``-th pass), a normal worker takes over."""
    rid = ws.enqueue(factory, fault_config(), f"killed at {point}:{n}")
    log = log_dir / f"{point}-{n}.log"
    with log.open("wb") as fh:
        proc = subprocess.Popen([sys.executable, str(HERE / "worker.py")], cwd=ROOT, stdout=fh,
                                stderr=subprocess.STDOUT, env={**env, "OPCOD_FAULT": f"{point}:{n}"})
        code = proc.wait(timeout=timeout_s)
    killed = code == -signal.SIGKILL
    status_at_kill = ws.get_run(factory, rid).status
    start = time.monotonic()
    ws.wait_for(lambda: ws.get_run(factory, rid).heartbeat_at is None or
                (time.time() - ws.get_run(factory, rid).heartbeat_at.timestamp()) > settings.stale_after_s,
                timeout=120, what="the killed worker's heartbeat to go stale")
    taker = Worker(settings, engine=engine)
    try:
        taker.run(once=True)
    finally:
        taker.close()
    run = ws.get_run(factory, rid)
    a, b = ws.run_records(factory, ref), ws.run_records(factory, rid)
    keys = [x["key"] for x in b["exchanges"]]
    ref_keys = {x["key"] for x in a["exchanges"]}
    return {"point": point, "n": n, "killed": killed, "status_at_kill": status_at_kill, "status": run.status,
            "error": (run.error or "")[:200], "equal": a == b, "exchanges": len(keys),
            "lost": len(ref_keys - set(keys)), "duplicated": len(keys) - len(set(keys)),
            "takeover_s": round(time.monotonic() - start, 1),
            "rows": ws.count(factory, Exchange, Exchange.run_id == rid)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--database-url", default=None)
    ap.add_argument("--points", default=",".join(POINTS))
    ap.add_argument("--n", type=int, default=3, help="kill at the n-th pass through each point (default 3)")
    ap.add_argument("--cache-dir", default=None, help="model cache (default: a temporary directory)")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="opcod-faults-"))
    url = args.database_url or f"sqlite:///{tmp / 'opcod.db'}"
    upgrade(url)
    engine = make_engine(url)
    factory = session_factory(engine)
    cache = Path(args.cache_dir) if args.cache_dir else tmp / "cache"
    settings = ws.make_settings(tmp, url, cache, heartbeat_s=0.5, stale_after_s=2.0)
    env = {**os.environ, "OPCOD_DATABASE_URL": url, "OPCOD_DATA_DIR": str(tmp / "data"), "OPCOD_CACHE_DIR": str(cache),
           "OPCOD_HEARTBEAT_S": "0.5", "OPCOD_STALE_AFTER_S": "2", "OPCOD_POLL_S": "0.2",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    ref = reference(factory, settings, engine)
    results = []
    for point in args.points.split(","):
        result = check_point(point, args.n, factory, settings, engine, env, ref, tmp)
        results.append(result)
        print(json.dumps(result), flush=True)
    ok = [r for r in results if r["killed"] and r["status"] == "finished" and r["equal"]
          and not r["lost"] and not r["duplicated"]]
    print(json.dumps({"backend": engine.url.get_backend_name(), "points": len(results), "recovered_exactly": len(ok),
                      "exchanges_lost": sum(r["lost"] for r in results),
                      "exchanges_duplicated": sum(r["duplicated"] for r in results)}), flush=True)
    engine.dispose()
    return 0 if len(ok) == len(results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
