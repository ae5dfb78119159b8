"""The worker main loop: register, claim, train, record, serve idle replays, shut down cleanly.

One worker trains one run at a time in its main thread (a heartbeat thread keeps its claim alive).
For a claimed run it builds ``opcod_core.trainer.Trainer`` with ``out_dir = <runs_dir>/<run id>``
and the shared model cache, the database observer (plus ``events.jsonl`` in ``out_dir``, the
headless contract) and the database controls, and calls ``run(resume=True)`` when ``out_dir`` holds
a checkpoint (a paused run, a re-queued one, or one taken over from a dead worker). A forked run
(``run.fork_checkpoint``) starts from a copy of that checkpoint.

Outcomes, each one fenced transaction that also writes a ``status`` event row:
- ``finished`` (summary stored by the recorder), ``cancelled``: final, ``finished_at`` set;
- ``paused`` at a human's request: ``paused`` (a cancel requested meanwhile turns it ``cancelled``);
- paused because this worker is stopping (SIGTERM/SIGINT): back to ``queued`` with
  ``progress.paused_by = "shutdown"`` so the next worker resumes it; nothing is lost;
- any exception: ``failed`` with the exception text and traceback; the worker goes on with the next
  run (a run must never kill its worker);
- ``RunLost`` (another worker took the run over while this one stalled): nothing is written, not even a
  checkpoint (the trainer checks that it still holds the run before each one);
- no readable checkpoint while the database records some (a worker on a host without the shared runs
  directory): ``failed`` with an error saying so; never a fresh start, which would erase the recorded rows.

Why the trainer subclass: the recorder flushes before every checkpoint write, so a checkpoint on
disk always has its preceding rows in the database (the basis of exact resume, see ``recorder``).
"""

from __future__ import annotations

import logging
import shutil
import socket
import threading
import traceback
from pathlib import Path

from sqlalchemy import Engine, select, update

from app import lifecycle
from app.db import make_engine, session_factory, session_scope
from app.models import Checkpoint, Event, Replay, Run
from app.services.run_policy import with_worker_ray
from app.settings import Settings
from app.types import utcnow
from app.worker.claim import Heartbeat, RunLost, claim_next, fence, register_worker, set_worker_status
from app.worker.controls import DBControls, StopRequested
from app.worker.recorder import Recorder
from app.worker.replays import IdleReplayer
from app.worker.trainer import WorkerTrainer
from opcod_core.checkpoint import checkpoint_root, latest_checkpoint, load_state, prune_optimizer_state
from opcod_core.observer import JSONLObserver, MultiObserver

log = logging.getLogger(__name__)


class CheckpointsUnreadable(RuntimeError):
    """The database shows checkpointed progress that this worker cannot read (see ``Worker._refuse_to_wipe``)."""


class Worker:
    def __init__(self, settings: Settings, *, engine: Engine | None = None, name: str | None = None,
                 recorder_cls: type[Recorder] = Recorder) -> None:
        self.settings = settings
        self._own_engine = engine is None
        self.engine = engine or make_engine(settings.database_url)
        self.factory = session_factory(self.engine)
        self.name = name
        self.recorder_cls = recorder_cls
        self.stop_event = threading.Event()
        self.worker_id: int | None = None
        self.heartbeat: Heartbeat | None = None
        self.replayer: IdleReplayer | None = None
        self.processed: list[tuple[int, str]] = []   # (run id, outcome) in order, for logs and tests

    # --- lifecycle --------------------------------------------------------------------------------
    def start(self) -> int:
        if self.worker_id is None:
            self.worker_id = register_worker(self.factory, self.name)
            self.heartbeat = Heartbeat(self.factory, self.worker_id, self.settings.heartbeat_s,
                                       stall_after_s=self.settings.stall_after_s)
            self.heartbeat.start()
            self.replayer = IdleReplayer(self.factory, self.worker_id, self.settings.runs_dir,
                                         self.settings.model_cache_dir, self.settings.stale_after_s)
            log.info("worker %s started (database %s)", self.worker_id, self.engine.url.render_as_string())
        return self.worker_id

    def request_stop(self) -> None:
        """Finish at the next step boundary (the run goes back to the queue) and exit the loop."""
        self.stop_event.set()

    def close(self) -> None:
        if self.heartbeat is not None:
            self.heartbeat.stop()
        if self.worker_id is not None:
            try:
                set_worker_status(self.factory, self.worker_id, "stopped")
            except Exception:  # noqa: BLE001 - best effort on the way out
                log.exception("could not mark worker %s stopped", self.worker_id)
        if self._own_engine:
            self.engine.dispose()

    def run(self, once: bool = False) -> int:
        """The main loop. ``once``: return when no run is queued and no idle replay is waiting."""
        self.start()
        try:
            failures = 0
            while not self.stop_event.is_set():
                try:
                    if self.process_next() or self.replayer.serve_one():
                        failures = 0
                        continue
                except Exception:  # noqa: BLE001 - the database may be briefly unreachable: back off, retry
                    failures += 1
                    log.exception("worker %s: database error (attempt %d); retrying", self.worker_id, failures)
                    if once and failures >= 3:
                        return 1
                    self.stop_event.wait(min(self.settings.poll_s * 2 ** failures, 30.0))
                    continue
                if once:
                    break
                self.stop_event.wait(self.settings.poll_s)
        finally:
            self.close()
        return 0

    # --- runs ------------------------------------------------------------------------------------------
    def process_next(self) -> bool:
        """Claim one run and train it to an outcome; False when nothing was claimable."""
        self.start()
        claimed = claim_next(self.factory, self.worker_id, self.settings.stale_after_s, self.settings.max_takeovers)
        if claimed is None:
            return False
        self.replayer.forget()
        self.heartbeat.hold(claimed.id)
        try:
            outcome = self._process(claimed.id)
        finally:
            self.heartbeat.hold(None)
        self.processed.append((claimed.id, outcome))
        log.info("run %s: %s", claimed.id, outcome)
        return True

    def _process(self, run_id: int) -> str:
        with self.factory() as s:
            run = s.get(Run, run_id)
            config_dict, fork, created_at = run.config, run.fork_checkpoint, run.created_at
        out_dir = self.settings.runs_dir / str(run_id)
        try:
            with session_scope(self.factory) as s:
                fence(s, run_id, self.worker_id)
                s.execute(update(Run).where(Run.id == run_id).values(out_dir=str(out_dir)))
            if self.stop_event.is_set():
                return self._finalize(run_id, "queued", shutdown=True)
            from opcod_core.config import RunConfig

            config = with_worker_ray(RunConfig.from_dict(config_dict), self.settings.ray_address)
            _own_out_dir(out_dir, run_id, created_at, config)
            if fork and latest_checkpoint(out_dir) is None:
                _copy_checkpoint(Path(fork), out_dir)
            result, controls = self._train(run_id, config, out_dir)
        except RunLost:
            log.warning("run %s: lost to another worker; stopping without writing", run_id)
            return "lost"
        except StopRequested as stop:
            if stop.action in ("pause", "cancel"):
                return self._finalize(run_id, "paused" if stop.action == "pause" else "cancelled")
            return self._finalize(run_id, "queued", shutdown=True)
        except CheckpointsUnreadable as exc:
            log.error("run %s: %s", run_id, exc)
            return self._finalize(run_id, "failed", error=str(exc))
        except Exception as exc:  # noqa: BLE001 - a failing run never kills the worker
            log.exception("run %s failed", run_id)
            return self._finalize(run_id, "failed", error=f"{type(exc).__name__}: {exc}\n\n{traceback.format_exc()}")
        if result.status == "paused" and controls.shutdown:
            return self._finalize(run_id, "queued", shutdown=True)
        return self._finalize(run_id, result.status)

    def _train(self, run_id: int, config, out_dir: Path):
        """Run (or resume from its latest checkpoint) the held run's trainer, reporting to events.jsonl and
        the database; returns (the trainer's result, the controls it polled)."""
        ckpt = latest_checkpoint(out_dir)
        resume = ckpt is not None
        if not resume:
            self._refuse_to_wipe(run_id, out_dir)
        jsonl = JSONLObserver(out_dir / "events.jsonl")
        try:
            if resume:
                jsonl.truncate_to(load_state(ckpt)["events_written"] + 1)
            else:
                jsonl.truncate_to(0)
                shutil.rmtree(checkpoint_root(out_dir), ignore_errors=True)
            recorder = self.recorder_cls(self.factory, run_id, self.worker_id, out_dir,
                                         stale_after_s=self.settings.stale_after_s)
            controls = DBControls(self.factory, run_id, self.worker_id, students=[st.name for st in config.students],
                                  out_dir=out_dir, stop=self.stop_event, lost=self.heartbeat.lost,
                                  approval_poll_s=self.settings.approval_poll_s,
                                  max_replays=self.settings.replays_per_step)
            trainer = WorkerTrainer(config, out_dir, observer=MultiObserver(jsonl, recorder), controls=controls,
                                    cache_dir=self.settings.model_cache_dir)
            trainer.recorder = recorder
            recorder.on_progress = controls.on_progress = self.heartbeat.progressed
            try:
                return trainer.run(resume=resume), controls
            finally:
                trainer.close()   # vLLM engines, Ray actors: nothing outlives the run in this worker
        finally:
            jsonl.close()

    def _refuse_to_wipe(self, run_id: int, out_dir: Path) -> None:
        """A fresh start erases the run's recorded rows: never do it when the database records checkpoints
        that this host cannot read (a worker without the shared runs directory), which is lost work, not a
        run that never got that far."""
        with self.factory() as s:
            recorded = s.scalars(select(Checkpoint).where(Checkpoint.run_id == run_id)
                                 .order_by(Checkpoint.id.desc())).all()
        if recorded:
            raise CheckpointsUnreadable(
                f"the database records {len(recorded)} checkpoint(s) of run {run_id} (the last: {recorded[0].path}) "
                f"but none is readable in {out_dir} on host {socket.gethostname()}. Is the runs directory shared "
                "by every worker (mount OPCOD_DATA_DIR/runs at the same path)? The run was not restarted from "
                "scratch, which would erase its recorded work; resume it from a worker that sees its checkpoints")

    def _finalize(self, run_id: int, status: str, *, shutdown: bool = False, error: str | None = None) -> str:
        """Move a held run on (one fenced transaction + a ``status`` event); returns the outcome."""
        try:
            with session_scope(self.factory) as s:
                fence(s, run_id, self.worker_id)
                run = s.get(Run, run_id)
                values, (kind, ref, payload) = lifecycle.worker_release(run, status, utcnow(), shutdown=shutdown,
                                                                        error=error)
                for column, value in values.items():
                    setattr(run, column, value)
                status = values["status"]
                s.add(Event(run_id=run_id, type=kind, ref_id=ref, payload=payload))
                # replays claimed at a step boundary the trainer never finished go back to the queue
                s.execute(update(Replay).where(Replay.run_id == run_id, Replay.worker_id == self.worker_id,
                                               Replay.status == "running")
                          .values(status="queued", worker_id=None, started_at=None)
                          .execution_options(synchronize_session=False))
        except RunLost:
            log.warning("run %s: lost before it could be marked %s", run_id, status)
            return "lost"
        if status in ("finished", "cancelled"):  # it will never resume: only weights are still useful (disk)
            prune_optimizer_state(checkpoint_root(self.settings.runs_dir / str(run_id)), current=None)
        return "shutdown" if shutdown else status


def _own_out_dir(out_dir: Path, run_id: int, created_at, config) -> None:
    """Make sure ``out_dir`` belongs to this run: a directory left by another run with the same id (a
    database deleted while the data directory was kept) must never be resumed from."""
    import json

    marker = out_dir / "run.json"
    mine = {"run_id": run_id, "created_at": created_at.isoformat() if created_at else None}
    if out_dir.exists():
        try:
            theirs = json.loads(marker.read_text()) if marker.exists() else None
        except ValueError:
            theirs = None
        saved = out_dir / "config.json"
        try:
            same_config = not saved.exists() or type(config).from_json(saved.read_text()) == config
        except ValueError:
            same_config = False
        if (theirs is not None and theirs != mine) or not same_config:
            log.warning("run %s: %s holds another run's outputs; starting afresh", run_id, out_dir)
            shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(mine))
    (out_dir / "config.json").write_text(config.to_json())


def _copy_checkpoint(src: Path, out_dir: Path) -> None:
    """Seed a forked run's directory with the checkpoint it forks from (then it resumes from it)."""
    if not (src / "state.json").exists():
        raise FileNotFoundError(f"fork_checkpoint {src} is not a checkpoint directory")
    root = checkpoint_root(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    shutil.copytree(src, root / src.name, dirs_exist_ok=True)
    (root / "LATEST").write_text(src.name)
