"""``WorkerTrainer``: the core trainer as the worker runs it (training runs and replays share it)."""

from __future__ import annotations

from app.worker.recorder import Recorder
from opcod_core.trainer import Trainer


class WorkerTrainer(Trainer):
    """The core trainer, flushing the database observer before each checkpoint is written."""

    recorder: Recorder | None = None

    def save_checkpoint(self, permanent: bool = False) -> None:
        if self.recorder is not None:
            self.recorder.flush()
        super().save_checkpoint(permanent)
