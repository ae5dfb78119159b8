"""Worker processes: claim runs from the database, train them through ``opcod_core``, write what happened.

The database is the contract (``docs/database-contract.md``): the web side writes queued runs and
control requests, a worker turns them into trainer calls and stores the trainer's events. Only this
package may import ``opcod_core.trainer``.

- ``claim``: worker registration, the atomic conditional-UPDATE claim of queued or stale runs, the
  heartbeat thread and the ownership fence every worker write goes through.
- ``recorder``: the database observer (one transaction per trainer step, event rows for SSE, exact
  resume cleanup).
- ``controls``: ``opcod_core.controls.Controls`` on top of requested actions, overrides, replays and
  approval rows.
- ``replays``: replays of runs nobody is running, served by an idle worker from the latest checkpoint.
- ``loop``: the main loop (claim, train, final status, idle replays, graceful shutdown).
- ``cli``: ``opcod worker``.
"""
