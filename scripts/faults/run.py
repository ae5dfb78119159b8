"""Kill a worker (SIGKILL) at each fault point of a run, let another worker take the run over, and check
that the run finishes with exactly the records of an uninterrupted run with the same seed.

    python scripts/faults/run.py [--database-url URL] [--points generation,backward,...] [--cache-dir DIR]

Prints one JSON line per point and a summary: whether the run finished, whether its records equal the
uninterrupted run's (steps, exchanges with texts, token ids and per-token arrays, gates, evaluations,
break samples, metric values), how many exchanges were lost or duplicated, and whether the human work
done during the run was kept. The SQLite database is a temporary file unless ``--database-url`` names
one (PostgreSQL: an empty database). The points are those of ``scripts/faults/worker.py``;
``tests/app/test_worker_faults.py`` runs the same checks.

A person (``Person``, a thread) works on every run the whole time, the uninterrupted ones included: it
asks a replay of the first exchange of each of the run's first steps, and decides every approval the
run asks for (approve, reject or edit, chosen by the exchange's key, so the same in every run). Runs are
in manual approval mode only for the ``approval_wait`` point (``POINT_CONFIGS``), each compared with an
uninterrupted run of its own config. Kept means: every replay the person asked is served (``done``, with
the person's text) and every approval keeps the person's decision."""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "tests" / "app"))

import worker_support as ws  # noqa: E402  (the tests' record comparison: one definition)
from worker import POINTS  # noqa: E402

from sqlalchemy import select  # noqa: E402

from app.db import make_engine, session_factory, session_scope, upgrade  # noqa: E402
from app.errors import Conflict, NotFound, TooManyRequests  # noqa: E402
from app.models import Approval, Exchange, Replay  # noqa: E402
from app.schemas import ApprovalDecisionIn, ReplayIn  # noqa: E402
from app.services import approvals, replays  # noqa: E402
from app.worker.loop import Worker  # noqa: E402

REPLAY_TEXT = "Count the atoms of each element on both sides first."
EDIT_TEXT = "Check the units before you compute."
#: the config of each point's run (default: "plain"); the approval wait needs runs that wait for a person
POINT_CONFIGS = {"approval_wait": "approval"}


def fault_config(kind: str = "plain"):
    """The run every point is checked on: the tiny preset, 2 rounds x 2 steps per direction, a checkpoint
    every step (so the kills fall between, inside and around checkpoints); ``approval``: kept feedback
    waits for a person (who decides long before the timeout)."""
    if kind == "approval":
        # kept feedback, and so approvals to wait for, by construction (worker_support.KEPT_PREFILL)
        return ws.small_config(checkpoint_every=1, tutor={"approval": "manual", "approval_timeout_s": 120.0,
                                                          "approval_default": "reject",
                                                          "prefill": ws.KEPT_PREFILL})
    return ws.small_config(checkpoint_every=1)


def decision_for(key: str) -> ApprovalDecisionIn:
    """The person's decision on an exchange: fixed by its key, so every run with the same seed gets the same."""
    pick = int(hashlib.sha256(key.encode()).hexdigest(), 16) % 3
    if pick == 2:
        return ApprovalDecisionIn(decision="edit", text=EDIT_TEXT, author="person")
    return ApprovalDecisionIn(decision=("approve", "reject")[pick], author="person")


class Person(threading.Thread):
    """A person at the dashboard, acting through the same services as the web routes (see the module doc)."""

    def __init__(self, factory, replay_steps: int = 3, interval_s: float = 0.05):
        super().__init__(daemon=True, name="person")
        self.factory, self.replay_steps, self.interval_s = factory, replay_steps, interval_s
        self.stop = threading.Event()
        self.asked: set[tuple[int, int]] = set()  # (run id, global step) replayed

    def run(self) -> None:
        while not self.stop.wait(self.interval_s):
            self.act()

    def act(self) -> None:
        with session_scope(self.factory) as s:
            pending = list(s.execute(select(Approval.id, Approval.exchange_key).where(Approval.status == "pending")))
            firsts = list(s.execute(select(Exchange.run_id, Exchange.global_step, Exchange.id)
                                    .where(Exchange.global_step < self.replay_steps).order_by(Exchange.key)))
        for approval_id, key in pending:
            try:
                approvals.decide(self.factory, approval_id, decision_for(key))
            except Conflict:
                pass  # decided meanwhile (or timed out): nothing to do
        for run_id, step, exchange_id in firsts:
            if (run_id, step) not in self.asked:
                try:
                    replays.create_replay(self.factory, exchange_id, ReplayIn(feedback_text=REPLAY_TEXT))
                except (NotFound, TooManyRequests):
                    continue  # the exchange is being redone after a kill, or the cap is reached: ask again later
                self.asked.add((run_id, step))


def human_work(factory, run_id: int) -> dict:
    """The person's work on a run: replays asked and served with the person's text, approvals decided by
    the person and whether each still holds the decision its key gets."""
    with session_scope(factory) as s:
        rps = list(s.scalars(select(Replay).where(Replay.run_id == run_id)))
        aps = list(s.scalars(select(Approval).where(Approval.run_id == run_id)))
        served = [r for r in rps if r.status == "done" and r.result and r.result["after"]["feedback"] == REPLAY_TEXT]
        by_person = [a for a in aps if a.decided_by == "person"]
        expected = {"approve": "approved", "reject": "rejected", "edit": "edited"}
        kept = [a for a in by_person if a.status == expected[decision_for(a.exchange_key).decision]
                and (a.text == EDIT_TEXT) == (a.status == "edited")]
        return {"replays": len(rps), "replays_served": len(served), "approvals": len(aps),
                "approvals_by_person": len(by_person), "approvals_kept": len(kept)}


def work_kept(work: dict) -> bool:
    return work["replays_served"] == work["replays"] > 0 and work["approvals_kept"] == work["approvals"]


class References:
    """The uninterrupted run of each config kind, made on first use (same database, same person)."""

    def __init__(self, factory, settings, engine):
        self.factory, self.settings, self.engine = factory, settings, engine
        self.runs: dict[str, int] = {}

    def __getitem__(self, kind: str) -> int:
        if kind not in self.runs:
            self.runs[kind] = reference(self.factory, self.settings, self.engine, kind)
        return self.runs[kind]


def reference(factory, settings, engine, kind: str = "plain") -> int:
    rid = ws.enqueue(factory, fault_config(kind), f"uninterrupted ({kind})")
    worker = Worker(settings, engine=engine)
    try:
        worker.run(once=True)
    finally:
        worker.close()
    assert ws.get_run(factory, rid).status == "finished", ws.get_run(factory, rid).error
    return rid


def check_point(point: str, n: int, factory, settings, engine, env: dict, refs: References, log_dir: Path,
                timeout_s: float = 900.0) -> dict:
    """One fault: the fault worker dies at ``point`` (its ``n``-th pass), a normal worker takes over.
    A ``Person`` must be at work on the database meanwhile (the approval runs wait for one)."""
    kind = POINT_CONFIGS.get(point, "plain")
    ref = refs[kind]
    rid = ws.enqueue(factory, fault_config(kind), f"killed at {point}:{n}")
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
    work = human_work(factory, rid)
    return {"point": point, "n": n, "killed": killed, "status_at_kill": status_at_kill, "status": run.status,
            "error": (run.error or "")[:200], "equal": a == b, "exchanges": len(keys),
            "differs": [k for k in a if a[k] != b.get(k)],
            "lost": len(ref_keys - set(keys)), "duplicated": len(keys) - len(set(keys)),
            "takeover_s": round(time.monotonic() - start, 1),
            "rows": ws.count(factory, Exchange, Exchange.run_id == rid), "human_work": work,
            "human_work_kept": work_kept(work)}


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
    person = Person(factory)
    person.start()
    refs = References(factory, settings, engine)
    results = []
    try:
        for point in args.points.split(","):
            result = check_point(point, args.n, factory, settings, engine, env, refs, tmp)
            results.append(result)
            print(json.dumps(result), flush=True)
    finally:
        person.stop.set()
        person.join()
    ok = [r for r in results if r["killed"] and r["status"] == "finished" and r["equal"]
          and not r["lost"] and not r["duplicated"] and r["human_work_kept"]]
    print(json.dumps({"backend": engine.url.get_backend_name(), "points": len(results), "recovered_exactly": len(ok),
                      "exchanges_lost": sum(r["lost"] for r in results),
                      "exchanges_duplicated": sum(r["duplicated"] for r in results),
                      "human_work_kept": sum(r["human_work_kept"] for r in results)}), flush=True)
    engine.dispose()
    return 0 if len(ok) == len(results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
