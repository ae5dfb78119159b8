"""A real worker process that kills itself (SIGKILL) at a chosen point of a run: the fault-injection worker.

``OPCOD_FAULT=POINT:N`` (``POINTS``): the N-th time the run reaches POINT after training began (the
recorder saw ``run_start`` or ``resume``), the process sends itself SIGKILL, with no chance to clean up:
what a crash, the OOM killer or a power cut leaves. Everything else is ``opcod worker``: the same ``Worker``
loop, recorder and trainer. Used by ``scripts/faults/run.py`` and ``tests/app/test_worker_faults.py``."""

from __future__ import annotations

import os
import signal
import sys
from collections import Counter

import torch

from app.settings import get_settings
from app.worker.loop import Worker
from app.worker.recorder import Recorder
from app.worker.controls import DBControls
from opcod_core import checkpoint, replay, student, trainer
from opcod_core.observer import JSONLObserver

POINT, _, N = os.environ.get("OPCOD_FAULT", "after_step_commit:1").partition(":")
N = int(N or 1)
armed = False
seen: Counter = Counter()


def die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def reached(point: str) -> bool:
    """Count a pass through ``point``; True on the N-th (then the caller kills the process)."""
    if not armed or point != POINT:
        return False
    seen[point] += 1
    return seen[point] == N


class FaultRecorder(Recorder):
    def on_event(self, event) -> None:
        global armed
        armed = armed or event.type in ("run_start", "resume")
        super().on_event(event)

    def flush(self) -> None:
        has_step = any(e.type == "step" for e in self.buffer)
        super().flush()
        if has_step and reached("after_step_commit"):
            die()

    def _write(self, s, events) -> None:
        super()._write(s, events)
        if any(e.type == "step" for e in events) and reached("step_commit"):
            die()  # rows written, transaction not committed


def _wrap(owner, name: str, point: str, before: bool = True):
    original = getattr(owner, name)

    def wrapped(*args, **kwargs):
        if before and reached(point):
            die()
        out = original(*args, **kwargs)
        if not before and reached(point):
            die()
        return out

    setattr(owner, name, wrapped)


_wrap(student.StudentRuntime, "sample", "generation")                       # mid-generation
_wrap(torch.autograd, "backward", "backward")                               # mid-backward
_wrap(torch.optim.AdamW, "step", "optimizer_step")                          # between backward and update
_wrap(trainer, "evaluate_domains", "evaluation")                            # mid-evaluation (gate, eval)
_wrap(student, "save_student", "checkpoint_write", before=False)            # one student written, not both
_wrap(JSONLObserver, "on_event", "jsonl_write", before=False)               # events.jsonl ahead of the database
_wrap(replay, "replay", "replay")                                           # serving a person's replay
_wrap(DBControls, "_poll_approvals", "approval_wait")                       # waiting for a person's approvals
_replace = checkpoint.os.replace


class _OsForCheckpoint:
    """``os`` for opcod_core.checkpoint: SIGKILL between the checkpoint's rename and the LATEST update."""

    def __getattr__(self, name):
        return getattr(os, name)

    @staticmethod
    def replace(src, dst):
        if str(src).endswith(".LATEST.tmp") and reached("rename_latest"):
            die()
        return _replace(src, dst)


checkpoint.os = _OsForCheckpoint()
POINTS = ("generation", "backward", "optimizer_step", "evaluation", "step_commit", "after_step_commit",
          "checkpoint_write", "rename_latest", "jsonl_write", "replay", "approval_wait")

if __name__ == "__main__":
    if POINT not in POINTS:
        raise SystemExit(f"OPCOD_FAULT: unknown point {POINT!r} (one of {', '.join(POINTS)})")
    Worker(get_settings(), name=f"fault-{POINT}-{N}", recorder_cls=FaultRecorder).run()
