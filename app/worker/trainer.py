"""``WorkerTrainer``: the core trainer as the worker runs it (training runs and replays share it)."""

from __future__ import annotations

from app.worker.recorder import Recorder
from opcod_core.trainer import Trainer


class WorkerTrainer(Trainer):
    """The core trainer, flushing the database observer before each checkpoint is written, and writing a
    checkpoint only while this worker still holds the run (a worker that lost it to a takeover must not
    write into the directory the new holder resumes from)."""

    recorder: Recorder | None = None

    def save_checkpoint(self, permanent: bool = False) -> None:
        if self.recorder is not None:
            self.recorder.flush()
            self.recorder.assert_held()
        super().save_checkpoint(permanent)
