"""A real worker process that kills itself (SIGKILL) at a chosen point: the fault-injection worker of the
SIGKILL tests. ``OPCOD_TEST_KILL_AFTER_STEP=N``: right after the transaction that records global step N
commits (the step's rows are in the database, no checkpoint after them). Everything else is
``opcod worker``: the same ``Worker`` loop, recorder and trainer."""

from __future__ import annotations

import os
import signal

from app.settings import get_settings
from app.worker.loop import Worker
from app.worker.recorder import Recorder

KILL_AFTER_STEP = int(os.environ["OPCOD_TEST_KILL_AFTER_STEP"])


class KillingRecorder(Recorder):
    def flush(self) -> None:
        last_step = any(e.type == "step" and e.global_step == KILL_AFTER_STEP for e in self.buffer)
        super().flush()
        if last_step:
            os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    Worker(get_settings(), name="fault-worker", recorder_cls=KillingRecorder).run()
