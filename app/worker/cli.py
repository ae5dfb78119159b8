"""``opcod worker``: a worker process on the database named by ``OPCOD_DATABASE_URL`` (or the default).

Registered through the ``opcod.commands`` entry point; this module stays import-light (the trainer
and torch are imported only when the command runs) because ``opcod`` loads every command's
``register`` at start.

Signals: the first SIGTERM/SIGINT asks the worker to stop at the next step boundary (the run goes
back to the queue with its checkpoint, see ``loop``); a second one exits at once (the run's
heartbeat then goes stale and another worker takes it over from its last checkpoint).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser("worker", help="claim queued runs from the database and train them")
    p.add_argument("--once", action="store_true",
                   help="process runs (and idle replays) until none is waiting, then exit")
    p.add_argument("--poll", type=float, default=None, metavar="S",
                   help="seconds between looks for queued runs when idle (default: OPCOD_POLL_S)")
    p.add_argument("--name", default=None, help="worker name shown in the dashboard (default host:pid)")
    p.set_defaults(func=cmd_worker)


def cmd_worker(args: argparse.Namespace) -> int:
    from app.db import upgrade
    from app.settings import Settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    settings = Settings()
    if args.poll is not None:
        if args.poll <= 0:
            print("opcod worker: --poll must be > 0", file=sys.stderr)
            return 2
        settings = settings.model_copy(update={"poll_s": args.poll})
    upgrade(settings.database_url)
    if settings.torch_threads is not None:
        import torch

        torch.set_num_threads(settings.torch_threads)

    from app.worker.loop import Worker

    worker = Worker(settings, name=args.name)
    stops = {"n": 0}

    def on_signal(signum, _frame):
        stops["n"] += 1
        if stops["n"] > 1:
            logging.getLogger(__name__).warning("second %s: exiting now", signal.Signals(signum).name)
            raise SystemExit(130)
        logging.getLogger(__name__).info("%s: stopping at the next step boundary", signal.Signals(signum).name)
        worker.request_stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return worker.run(once=args.once)
