"""THE SIGKILL TEST (issue 3): a worker process killed mid-run is replaced by another that takes the
stale run over and resumes it from its last checkpoint, with nothing lost and nothing duplicated: the
finished run's step and exchange records equal exactly those of an uninterrupted run with the same
config and seed. Everything runs in real ``opcod worker`` processes on one SQLite file."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

import worker_support as ws

from app.db import make_engine, session_factory, upgrade
from app.types import utcnow
from app.models import Event, Exchange, Metric, Rollout, Step, Worker as WorkerRow

pytestmark = pytest.mark.slow

OPCOD = str(Path(sys.executable).parent / "opcod")
FAULT_WORKER = Path(__file__).resolve().parents[2] / "scripts" / "faults" / "worker.py"


def _start(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    with log.open("ab") as fh:
        return subprocess.Popen([OPCOD, "worker", *args], env=env, stdout=fh, stderr=subprocess.STDOUT)


def _reap(procs: list[subprocess.Popen]) -> None:
    """Kill whatever worker a failed test left running."""
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=60)


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-4000:] if log.exists() else "(no log)"


def test_sigkill_mid_run_then_takeover_equals_an_uninterrupted_run(tmp_path, tiny_cache):
    url = f"sqlite:///{tmp_path / 'db' / 'opcod.db'}"
    upgrade(url)
    eng = make_engine(url)
    factory = session_factory(eng)
    cfg = ws.small_config()
    ref = ws.enqueue(factory, cfg, "uninterrupted")   # claimed first (oldest)
    rid = ws.enqueue(factory, cfg, "killed")
    env = {**os.environ, "OPCOD_DATABASE_URL": url, "OPCOD_DATA_DIR": str(tmp_path / "data"),
           "OPCOD_CACHE_DIR": str(tiny_cache), "OPCOD_HEARTBEAT_S": "0.5", "OPCOD_STALE_AFTER_S": "2",
           "OPCOD_POLL_S": "0.2"}
    log1, log2 = tmp_path / "worker1.log", tmp_path / "worker2.log"
    procs: list[subprocess.Popen] = []

    def steps_of(run_id):
        with factory() as s:
            return list(s.scalars(select(Step.global_step).where(Step.run_id == run_id)))

    try:
        p1 = _start([], env, log1)
        procs.append(p1)
        ws.wait_for(lambda: ws.get_run(factory, ref).status == "finished" or p1.poll() is not None,
                    what="the first worker to finish the uninterrupted run")
        assert ws.get_run(factory, ref).status == "finished", _tail(log1)
        ws.wait_for(lambda: len(steps_of(rid)) >= 3 or p1.poll() is not None, what="a few steps of the second run")
        os.kill(p1.pid, signal.SIGKILL)
        p1.wait(timeout=60)
        killed = ws.get_run(factory, rid)
        assert killed.status == "running", f"the run must be cut mid-way, not {killed.status}\n{_tail(log1)}"
        first_worker = killed.worker_id

        p2 = _start([], env, log2)
        procs.append(p2)
        ws.wait_for(lambda: ws.get_run(factory, rid).status not in ("running", "queued") or p2.poll() is not None,
                    what="the second worker to take the run over and finish it")
        p2.send_signal(signal.SIGTERM)          # an idle worker stops cleanly
        assert p2.wait(timeout=120) == 0, _tail(log2)
    finally:
        _reap(procs)
    run = ws.get_run(factory, rid)
    assert run.status == "finished", f"{run.status}: {run.error}\n{_tail(log2)}"
    assert run.worker_id is None and run.worker_id != first_worker
    with factory() as s:
        status = [e.payload for e in s.scalars(select(Event).where(Event.run_id == rid, Event.type == "status")
                                               .order_by(Event.id))]
        assert [p["status"] for p in status] == ["queued", "running", "running", "finished"]
        assert status[2]["taken_over"] is True and status[2]["previous_worker_id"] == first_worker
        workers = {w.id: w.status for w in s.scalars(select(WorkerRow))}
        assert workers[first_worker] != "stopped" and sorted(workers.values()).count("stopped") == 1

    a, b = ws.run_records(factory, ref), ws.run_records(factory, rid)
    # nothing lost, nothing duplicated
    assert [st[0] for st in b["steps"]] == list(range(8))
    keys = [x["key"] for x in b["exchanges"]]
    assert len(keys) == len(set(keys)) == ws.count(factory, Rollout, Rollout.run_id == rid)
    assert ws.count(factory, Exchange, Exchange.run_id == rid) == ws.count(factory, Exchange, Exchange.run_id == ref)
    assert ws.count(factory, Metric, Metric.run_id == rid) == ws.count(factory, Metric, Metric.run_id == ref)
    assert ws.count(factory, Event, Event.run_id == rid, Event.type == "step") == 8
    # and equal exactly: keys, texts, token ids, correctness, categories, losses, divergence arrays, ...
    assert len(a["exchanges"]) == len(b["exchanges"])
    for x, y in zip(a["exchanges"], b["exchanges"], strict=True):
        assert x == y, x["key"]
    assert a["steps"] == b["steps"]
    assert a["gates"] == b["gates"] and a["evals"] == b["evals"] and a["breaks"] == b["breaks"]
    assert a["metric_values"] == b["metric_values"]
    eng.dispose()


def test_human_work_on_redone_exchanges_survives_a_sigkill(tmp_path, tiny_cache):
    """A worker dies (SIGKILL) right after committing step 1, with no checkpoint since the run began. A person
    then edits the feedback of a step-1 exchange and replays a step-0 one. The next worker resumes from the
    checkpoint before step 0, so both exchanges are deleted and redone: the override and the replay are kept
    (before, they were cascade-deleted), re-linked to the redone exchanges with the same keys, and served."""
    from app.models import Override, Replay
    from app.schemas import ExchangeOverrideIn, ReplayIn
    from app.services import overrides, replays

    url = f"sqlite:///{tmp_path / 'db' / 'opcod.db'}"
    upgrade(url)
    eng = make_engine(url)
    factory = session_factory(eng)
    rid = ws.enqueue(factory, ws.small_config(checkpoint_every=100_000), "killed")
    env = {**os.environ, "OPCOD_DATABASE_URL": url, "OPCOD_DATA_DIR": str(tmp_path / "data"),
           "OPCOD_CACHE_DIR": str(tiny_cache), "OPCOD_HEARTBEAT_S": "0.5", "OPCOD_STALE_AFTER_S": "2",
           "OPCOD_POLL_S": "0.2", "OPCOD_FAULT": "after_step_commit:2",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]), env_path()])}
    log1, log2 = tmp_path / "fault.log", tmp_path / "worker2.log"
    procs: list[subprocess.Popen] = []
    try:
        with log1.open("ab") as fh:
            p1 = subprocess.Popen([sys.executable, str(FAULT_WORKER)], env=env,
                                  stdout=fh, stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parents[2])
        procs.append(p1)
        assert p1.wait(timeout=900) == -signal.SIGKILL, _tail(log1)
        killed_at = utcnow()
        with factory() as s:
            by_step = {st: s.scalars(select(Exchange).where(Exchange.run_id == rid, Exchange.global_step == st)
                                     .order_by(Exchange.id)).first() for st in (0, 1)}
        assert by_step[0] is not None and by_step[1] is not None, _tail(log1)
        edit = overrides.create_exchange_override(factory, by_step[1].id, ExchangeOverrideIn(
            kind="edit", text="Count the atoms of each element first."))
        replay = replays.create_replay(factory, by_step[0].id, ReplayIn(feedback_text="Balance the charges."))

        p2 = _start([], env, log2)
        procs.append(p2)
        ws.wait_for(lambda: ws.get_run(factory, rid).status not in ("running", "queued") or p2.poll() is not None,
                    what="the second worker to take the run over and finish it")
        ws.wait_for(lambda: ws.count(factory, Replay, Replay.id == replay.id, Replay.status == "done"),
                    what="the replay served")
        p2.send_signal(signal.SIGTERM)
        assert p2.wait(timeout=120) == 0, _tail(log2)
    finally:
        _reap(procs)
    run = ws.get_run(factory, rid)
    assert run.status == "finished", f"{run.status}: {run.error}\n{_tail(log2)}"
    with factory() as s:
        ov, rp = s.get(Override, edit.id), s.get(Replay, replay.id)
        assert ov is not None and rp is not None  # kept
        for row, was in ((ov, by_step[1]), (rp, by_step[0])):
            ex = s.get(Exchange, row.exchange_id)
            assert ex is not None and ex.key == was.key == row.exchange_key  # re-linked to the redo,
            assert ex.created_at >= killed_at                                 # written after the kill
        assert ov.status == "applied"
        human = s.scalars(select(Exchange).where(Exchange.run_id == rid, Exchange.override_id == ov.id)).one()
        assert human.human_edited and "Count the atoms" in human.teacher_context
        assert rp.result and rp.result["after"]["feedback"] == "Balance the charges."
        keys_all = s.scalars(select(Exchange.key).where(Exchange.run_id == rid)).all()
        assert len(keys_all) == len(set(keys_all))
    eng.dispose()


def env_path() -> str:
    return os.environ.get("PYTHONPATH", "")
