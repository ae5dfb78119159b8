"""``opcod serve``: migrate the database, start N worker processes and the web server.

- The database is upgraded (``alembic upgrade head``) before anything serves or trains.
- Workers are ``opcod worker`` subprocesses in their own process group, supervised (``app.worker_pool``: a
  worker that dies is restarted with a growing delay), so a Ctrl-C in the terminal
  reaches only this process, which then shuts everything down in order: uvicorn first (no new
  requests), then SIGTERM to every worker (each pauses its run at the next step boundary and puts it
  back in the queue, docs/database-contract.md), waiting for them up to ``--worker-grace`` seconds
  before SIGKILL (a killed worker's run is resumed from its last checkpoint by the next worker).
- It binds 127.0.0.1 by default and refuses a non-loopback address unless ``OPCOD_API_TOKEN`` is set:
  the API can start training jobs, so it is never open to a network without a token.
"""

from __future__ import annotations

import ipaddress
import logging
import signal
import sys

from app.request_policy import MIN_REMOTE_TOKEN_LENGTH
from app.worker_pool import WorkerPool

log = logging.getLogger("opcod.serve")


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a hostname other than localhost may resolve to anything


def bind_problem(host: str, token: str | None) -> str | None:
    """Why ``host`` may not be bound with ``token``, or None."""
    if is_loopback(host):
        return None
    if not token:
        return (f"refusing to bind {host}, which is not a loopback address, without a token: set OPCOD_API_TOKEN "
                "(clients then send 'Authorization: Bearer <token>'), or bind 127.0.0.1")
    if len(token) < MIN_REMOTE_TOKEN_LENGTH:
        return (f"refusing to bind {host} with a token shorter than {MIN_REMOTE_TOKEN_LENGTH} characters: set a "
                "longer OPCOD_API_TOKEN")
    return None


def with_bind_host(settings, host: str):
    """``settings`` whose allowed Host names include the address it binds (a clients' name for it must be
    in ``OPCOD_ALLOWED_HOSTS``; a wildcard bind without any is logged, since every request would be 400)."""
    if is_loopback(host):
        return settings
    if host in ("0.0.0.0", "::", "[::]"):
        if not settings.allowed_hosts:
            log.warning("bound to %s with no OPCOD_ALLOWED_HOSTS: only requests addressed to a loopback name are "
                        "served; set OPCOD_ALLOWED_HOSTS='[\"<name clients use>\"]'", host)
        return settings
    name = f"[{host.strip('[]')}]" if ":" in host else host
    return settings.model_copy(update={"allowed_hosts": [*settings.allowed_hosts, name]})


def cmd_serve(args) -> int:
    from app.settings import get_settings

    settings = get_settings()
    host = args.host or settings.host
    port = args.port or settings.port
    n_workers = 0 if args.no_worker else args.workers
    problem = bind_problem(host, settings.api_token) or ("--workers must be >= 0" if n_workers < 0 else None)
    if problem:
        print(f"opcod serve: {problem}", file=sys.stderr)
        return 2

    import uvicorn

    from app.db import upgrade
    from app.main import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    settings = with_bind_host(settings, host)
    upgrade(settings.database_url)
    app = create_app(settings)

    # uvicorn re-raises the signal that stopped it once it has shut down; with these handlers that
    # only records it, so we get to stop the workers before exiting.
    received: list[int] = []
    previous = {sig: signal.signal(sig, lambda s, _f: received.append(s)) for sig in (signal.SIGINT, signal.SIGTERM)}
    pool = WorkerPool(n_workers)
    try:
        pool.start()
        if n_workers:
            log.info("started %d worker(s): pids %s (supervised: a worker that dies is restarted)", n_workers,
                     pool.pids)
        config = uvicorn.Config(app, host=host, port=port, log_level=args.log_level, proxy_headers=False,
                                timeout_graceful_shutdown=5)
        server = uvicorn.Server(config)
        if not received:
            server.run()
    finally:
        pool.stop(args.worker_grace)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def serve_arguments(sp) -> None:
    sp.add_argument("--host", default=None, help="bind address (default OPCOD_HOST or 127.0.0.1; a "
                    "non-loopback address needs OPCOD_API_TOKEN)")
    sp.add_argument("--port", type=int, default=None, help="port (default OPCOD_PORT or 8000)")
    sp.add_argument("--workers", type=int, default=1, help="training worker processes to start (default 1)")
    sp.add_argument("--no-worker", action="store_true", help="start no worker (run `opcod worker` elsewhere)")
    sp.add_argument("--worker-grace", type=float, default=120.0,
                    help="seconds to wait for workers to pause their runs on shutdown before killing them")
    sp.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
