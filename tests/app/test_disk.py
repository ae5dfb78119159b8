"""Bounded disk: pruned checkpoints are marked and refused (409) where they were offered, runs can be
deleted (API and dashboard), ``opcod gc`` removes what no run needs, and a save that would not fit is
refused before it writes."""

from __future__ import annotations

import json
import shutil
from collections import namedtuple
from pathlib import Path

import pytest

import api_seed
import worker_support as ws
from app.db import session_scope
from app.models import Checkpoint, Exchange, Run
from app.worker.recorder import Recorder
from opcod_core import checkpoint as ck
from opcod_core import events as ev

V1 = "/api/v1"


def _write_checkpoint(db, run_id: int, tag: str, next_task: int) -> str:
    """A checkpoint the run's worker writes after pruning the older one (its files and event)."""
    with db() as s:
        run = s.get(Run, run_id)
        worker_id, old = run.worker_id, s.query(Checkpoint).filter_by(run_id=run_id).first()
    shutil.rmtree(old.path)                                   # the retention policy deleted it
    path = Path(old.path).parent / tag
    path.mkdir()
    (path / "state.json").write_text(json.dumps({"next_task": next_task, "events_written": 1000}))
    rec = Recorder(db, run_id, worker_id, Path(old.path).parent.parent)
    rec.on_event(ev.CheckpointEvent(tag=tag, path=str(path), next_task=next_task, after=["step", 1, 1, 9],
                                    events_before=1000))
    return old


def test_pruned_checkpoints_are_marked_and_refused(api):
    client, db = api
    seeded = api_seed.seed_run(db, steps=2, per_step=2)
    old = _write_checkpoint(db, seeded.run_id, "step-000010", 10)
    listed = {c["tag"]: c["pruned"] for c in client.get(f"{V1}/runs/{seeded.run_id}/checkpoints").json()}
    assert listed == {old.tag: True, "step-000010": False}
    r = client.post(f"{V1}/runs/{seeded.run_id}/fork", json={"checkpoint_id": old.id})
    assert r.status_code == 409 and "pruned" in r.json()["error"]["message"]
    r = client.post(f"{V1}/exchanges/{seeded.exchange_ids[0]}/replay", json={"tutor_checkpoint": old.tag})
    assert r.status_code == 409 and "pruned" in r.json()["error"]["message"]
    assert client.post(f"{V1}/runs/{seeded.run_id}/fork", json={}).status_code == 201   # the newest kept one
    page = client.get(f"/runs/{seeded.run_id}").text
    assert "step-000010" in page and f'value="{old.id}"' not in page                   # not offered


def test_delete_a_run(api, tmp_path):
    client, db = api
    seeded = api_seed.seed_run(db, steps=1, per_step=2)
    rid = seeded.run_id
    out_dir = client.app.state.settings.runs_dir / str(rid)
    (out_dir / "checkpoints").mkdir(parents=True)
    (out_dir / "events.jsonl").write_text("{}\n")
    r = client.delete(f"{V1}/runs/{rid}")
    assert r.status_code == 409 and "cancel it first" in r.json()["error"]["message"]
    api_seed.set_status(db, rid, "finished", worker_id=None)
    fork = client.post(f"{V1}/runs/{rid}/fork", json={}).json()["id"]
    r = client.delete(f"{V1}/runs/{rid}")
    assert r.status_code == 409 and str(fork) in r.json()["error"]["message"]   # its checkpoint is still needed
    assert client.post(f"{V1}/runs/{fork}/cancel").status_code == 200
    assert client.delete(f"{V1}/runs/{rid}").status_code == 204
    assert client.get(f"{V1}/runs/{rid}").status_code == 404 and not out_dir.exists()
    assert ws.count(db, Exchange, Exchange.run_id == rid) == 0
    # the dashboard's button
    other = api_seed.seed_run(db, steps=1, per_step=1, status="failed").run_id
    web = api_seed.with_csrf(client)
    r = web.post(f"/runs/{other}/delete", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/"
    assert client.get(f"{V1}/runs/{other}").status_code == 404


def test_opcod_gc(api, tmp_path):
    from app.gc import collect

    client, db = api
    settings = client.app.state.settings
    seeded = api_seed.seed_run(db, steps=1, per_step=1, status="paused")   # may resume: keeps its newest
    done = api_seed.seed_run(db, steps=1, per_step=1, status="finished")   # will never resume: keeps none
    done_opt = settings.runs_dir / str(done.run_id) / "checkpoints" / "task-000009" / "chem" / "optimizer.pt"
    done_opt.parent.mkdir(parents=True)
    (done_opt.parents[1] / "state.json").write_text(json.dumps({"next_task": 9, "events_written": 9}))
    done_opt.write_bytes(b"o" * 100)
    run_dir = settings.runs_dir / str(seeded.run_id) / "checkpoints"
    for tag, n in (("task-000001", 1), ("task-000002", 2)):
        (run_dir / tag / "chem").mkdir(parents=True)
        (run_dir / tag / "state.json").write_text(json.dumps({"next_task": n, "events_written": n}))
        (run_dir / tag / "chem" / "optimizer.pt").write_bytes(b"x" * 1000)
    (run_dir / ".tmp-task-000003").mkdir()
    (run_dir / ".tmp-task-000003" / "junk").write_bytes(b"y" * 500)
    orphan = settings.runs_dir / "999999"
    orphan.mkdir()
    (orphan / "events.jsonl").write_bytes(b"z" * 2000)
    with db() as s:  # the seeded runs' recorded checkpoints lost their files (pruned by a worker that died)
        for run_id in (seeded.run_id, done.run_id):
            shutil.rmtree(s.query(Checkpoint).filter_by(run_id=run_id).one().path)
    dry = collect(settings, dry_run=True)
    assert (len(dry.orphan_runs), len(dry.temp_dirs), len(dry.optimizer_files)) == (1, 1, 2)
    assert dry.bytes_freed == 3600 and orphan.exists()                           # nothing removed
    report = collect(settings)
    assert report.bytes_freed == 3600 and not orphan.exists() and not (run_dir / ".tmp-task-000003").exists()
    assert not done_opt.exists()
    assert not (run_dir / "task-000001" / "chem" / "optimizer.pt").exists()
    assert (run_dir / "task-000002" / "chem" / "optimizer.pt").exists()         # the newest keeps it
    assert dry.marked_pruned == report.marked_pruned == 2
    with session_scope(db) as s:
        assert all(c.pruned for c in s.query(Checkpoint).filter(Checkpoint.run_id.in_([seeded.run_id, done.run_id])))


def test_a_save_that_would_not_fit_is_refused(tmp_path, monkeypatch):
    previous = tmp_path / "checkpoints" / "task-000001"
    previous.mkdir(parents=True)
    (previous / "weights").write_bytes(b"w" * 4096)
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(ck.shutil, "disk_usage", lambda _p: usage(10 << 30, 10 << 30, 1 << 20))
    with pytest.raises(ck.NotEnoughDiskSpace, match="not enough disk space.*resume the run"):
        ck.save_checkpoint(tmp_path, "task-000002", {}, {"next_task": 2}, keep=2, previous=previous)
    assert not (tmp_path / "checkpoints" / "task-000002").exists()
