"""``WorkerPool``: the worker processes ``opcod serve`` starts, supervised.

Why: a worker can die under the server (a run that runs out of memory, a kill by the OOM killer, a crash
in a native library). Before, ``opcod serve`` never noticed and queued runs waited for ever. The pool checks
its processes every ``interval_s``; a worker that exited while the pool was not stopping is started again,
after a delay that doubles with each death in a row of that slot (from ``backoff_s`` up to
``max_backoff_s``, reset once a worker has lived ``healthy_s``), so a worker that dies at once does not
spin. Each death and restart is logged; the dead worker's run is taken over by the next worker (its
heartbeat goes stale), and a run that keeps killing workers is failed after ``settings.max_takeovers``
(``app.worker.claim.fail_poisoned``). Liveness is visible in ``GET /api/v1/workers`` and on the runs page.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Callable, Sequence

log = logging.getLogger("opcod.serve")


def worker_command() -> list[str]:
    return [sys.executable, "-m", "opcod_core.cli", "worker"]


def worker_env(n: int) -> dict[str, str]:
    """The workers' environment. Without ``OPCOD_TORCH_THREADS`` each worker gets an equal share of the
    cores *less one*, left to the web server (at least one thread each):
    - several workers with torch's default (all cores per process) on a 2-core machine ran 2-30x slower
      than one, measured while building the v3 students beside the test suite;
    - one worker with both cores of this 2-core machine took 1.6-1.8x as long per step while 50 event
      streams and 10 pollers were served (the server's threads interrupt torch's, and every torch op waits
      for its slowest thread); with one thread it took the same time with or without them (x0.88-1.07).
      On an idle machine one thread was slower (0.45-0.48 s against 0.32-0.38 s per tiny step); with one
      watcher the two were about equal (benchmarks/live_load.py, docs/benchmarks.md). On a 16-core
      machine the reserved core costs a worker 1/16."""
    env = os.environ.copy()
    if "OPCOD_TORCH_THREADS" not in env:
        env["OPCOD_TORCH_THREADS"] = str(max(1, ((os.cpu_count() or 1) - 1) // max(1, n)))
    return env


class WorkerPool:
    def __init__(self, n: int, command: Callable[[], Sequence[str]] = worker_command, *, backoff_s: float = 1.0,
                 max_backoff_s: float = 60.0, healthy_s: float = 60.0) -> None:
        self.n = n
        self.command = command
        self.backoff_s, self.max_backoff_s, self.healthy_s = backoff_s, max_backoff_s, healthy_s
        self.procs: list[subprocess.Popen | None] = [None] * n
        self.started_at = [0.0] * n
        self.deaths = [0] * n          # deaths in a row per slot (reset after a healthy life)
        self.restart_at = [0.0] * n    # when a dead slot may start again
        self.restarts = 0              # restarts in all (for logs and tests)
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p is not None]

    def start(self, interval_s: float = 1.0) -> None:
        """Start every worker, then supervise them from a daemon thread."""
        for i in range(self.n):
            self._spawn(i)
        self._thread = threading.Thread(target=self._supervise, args=(interval_s,), name="worker-pool", daemon=True)
        self._thread.start()

    def _spawn(self, i: int) -> None:
        self.procs[i] = subprocess.Popen(list(self.command()), start_new_session=True, env=worker_env(self.n))
        self.started_at[i] = time.monotonic()

    def check(self) -> list[int]:
        """One supervision pass: note dead workers, restart those whose delay is over; returns restarted slots."""
        restarted = []
        with self._lock:
            if self._stopping.is_set():
                return restarted
            now = time.monotonic()
            for i, proc in enumerate(self.procs):
                if proc is not None and proc.poll() is not None:
                    lived = now - self.started_at[i]
                    self.deaths[i] = 1 if lived >= self.healthy_s else self.deaths[i] + 1
                    delay = min(self.backoff_s * 2 ** (self.deaths[i] - 1), self.max_backoff_s)
                    self.restart_at[i] = now + delay
                    log.error("worker pid %d exited with status %s after %.0f s; restarting it in %.0f s",
                              proc.pid, proc.returncode, lived, delay)
                    self.procs[i] = None
                if self.procs[i] is None and now >= self.restart_at[i]:
                    self._spawn(i)
                    self.restarts += 1
                    restarted.append(i)
                    log.info("worker restarted: pid %d", self.procs[i].pid)
        return restarted

    def _supervise(self, interval_s: float) -> None:
        while not self._stopping.wait(interval_s):
            try:
                self.check()
            except Exception:  # noqa: BLE001 - supervision must outlive any one failure
                log.exception("worker supervision failed; retrying")

    def stop(self, grace_s: float) -> None:
        """No more restarts; SIGTERM to every worker, wait up to ``grace_s`` in all, then SIGKILL what is left."""
        with self._lock:
            self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        stop_processes([p for p in self.procs if p is not None], grace_s)


def stop_processes(procs: list[subprocess.Popen], grace_s: float) -> None:
    """SIGTERM to every process, wait up to ``grace_s`` in all, then SIGKILL what is left."""
    for p in procs:
        if p.poll() is None:
            try:
                p.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + grace_s
    for p in procs:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.warning("worker %d did not stop within %.0f s: killing it (its run resumes from its last "
                        "checkpoint)", p.pid, grace_s)
            p.kill()
            p.wait()
