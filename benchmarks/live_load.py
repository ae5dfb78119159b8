"""Live load: a training run watched by many dashboard clients, against the same run watched by none.

    python benchmarks/live_load.py [--clients 50] [--pollers 10] [--steps 6] [--cache-dir DIR]
                                   [--torch-threads N] [--poll run,exchanges,page]

Starts ``opcod serve --workers 1`` on a temporary data directory and trains the tiny preset (1 round x
``--steps`` steps per direction) twice, one after the other, with the same seed: first with no client,
then with ``--clients`` open event streams (SSE, what each open run page holds) and ``--pollers`` clients
polling the run and its exchanges every second (the API automation and the pages' refreshes). Prints one
JSON object: the training step time of both runs (median of the ``time/step`` metric over steps after the
first), their ratio, the errors the clients saw (non-2xx answers, broken streams), and the event-to-client
latency of the streams (p50, p95: from the event row's ``created_at`` to its arrival). Appends a line to
docs/benchmarks.md. Both runs share one machine and one server, so the ratio, not the absolute times, is the
figure (the machine is shared and noisy; run it twice before drawing a conclusion). The clients run in this
process, on the same machine: a harder case than browsers elsewhere. ``--torch-threads`` overrides the
worker's torch threads (default: what ``opcod serve`` gives it, ``app.worker_pool.worker_env``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from record import machine, record  # noqa: E402


def start_server(data: Path, port: int, cache: Path, torch_threads: int | None = None) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPCOD_")}
    if torch_threads is not None:
        env["OPCOD_TORCH_THREADS"] = str(torch_threads)
    env.update({"OPCOD_DATA_DIR": str(data), "OPCOD_CACHE_DIR": str(cache), "OPCOD_MAX_EVENT_STREAMS": "1000",
                "PYTHONUNBUFFERED": "1"})
    data.mkdir(parents=True, exist_ok=True)
    log = open(data / "serve.log", "wb")
    return subprocess.Popen([sys.executable, "-m", "opcod_core.cli", "serve", "--port", str(port), "--workers", "1"],
                            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=str(data))


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def wait_healthy(base: str, deadline_s: float = 120.0) -> None:
    end = time.monotonic() + deadline_s
    async with httpx.AsyncClient() as c:
        while time.monotonic() < end:
            try:
                if (await c.get(base + "/healthz", timeout=2)).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            await asyncio.sleep(0.2)  # polling interval of a deadline loop
    raise RuntimeError("the server did not become healthy")


async def create_run(c: httpx.AsyncClient, steps: int, name: str) -> int:
    body = {"preset": "tiny", "name": name, "overrides": {"schedule": {"rounds": 1, "steps_per_direction": steps}}}
    r = await c.post("/api/v1/runs", json=body)
    r.raise_for_status()
    return r.json()["id"]


async def wait_final(c: httpx.AsyncClient, run_id: int, deadline_s: float) -> str:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        status = (await c.get(f"/api/v1/runs/{run_id}")).json()["status"]
        if status in ("finished", "failed", "cancelled"):
            return status
        await asyncio.sleep(0.5)  # polling interval of a deadline loop
    raise RuntimeError(f"run {run_id} did not finish in {deadline_s:.0f} s")


async def step_times(c: httpx.AsyncClient, run_id: int) -> list[float]:
    series = (await c.get(f"/api/v1/runs/{run_id}/metrics", params={"keys": "time/step"})).json()["series"]
    return [v for _step, v in series.get("time/step", [])]


async def stream_client(base: str, run_id: int, errors: list, latencies: list, stop: asyncio.Event) -> None:
    try:
        async with httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(30.0, read=None)) as c:
            async with c.stream("GET", f"/api/v1/runs/{run_id}/events") as r:
                if r.status_code != 200:
                    errors.append(f"stream {r.status_code}")
                    return
                async for line in r.aiter_lines():
                    if line.startswith("data:"):
                        data = json.loads(line[5:])
                        if "created_at" in data:
                            made = datetime.fromisoformat(data["created_at"])
                            latencies.append((datetime.now(timezone.utc) - made).total_seconds())
                    if stop.is_set():
                        return
    except (httpx.HTTPError, json.JSONDecodeError) as exc:
        if not stop.is_set():
            errors.append(f"stream {type(exc).__name__}")


POLLED = {"run": "/api/v1/runs/{id}", "exchanges": "/api/v1/runs/{id}/exchanges?limit=20", "page": "/runs/{id}"}


async def poller(base: str, run_id: int, errors: list, stop: asyncio.Event, polled=tuple(POLLED)) -> None:
    async with httpx.AsyncClient(base_url=base, timeout=30.0) as c:
        while not stop.is_set():
            for path in (POLLED[name].format(id=run_id) for name in polled):
                try:
                    r = await c.get(path)
                    if r.status_code >= 400:
                        errors.append(f"{path} {r.status_code}")
                except httpx.HTTPError as exc:
                    errors.append(f"{path} {type(exc).__name__}")
            await asyncio.sleep(1.0)  # a page refresh every second


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))], 3)


async def measure(args) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="opcod-live-load-"))
    cache = Path(args.cache_dir) if args.cache_dir else tmp / "cache"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start_server(tmp / "data", port, cache, args.torch_threads)
    try:
        await wait_healthy(base)
        async with httpx.AsyncClient(base_url=base, timeout=30.0) as c:
            quiet = await create_run(c, args.steps, "no clients")
            assert await wait_final(c, quiet, args.deadline_s) == "finished"
            loaded = await create_run(c, args.steps, f"{args.clients} clients")
            errors: list[str] = []
            latencies: list[float] = []
            stop = asyncio.Event()
            tasks = [asyncio.create_task(stream_client(base, loaded, errors, latencies, stop))
                     for _ in range(args.clients)]
            tasks += [asyncio.create_task(poller(base, loaded, errors, stop, args.poll.split(",")))
                      for _ in range(args.pollers)]
            status = await wait_final(c, loaded, args.deadline_s)
            stop.set()
            await asyncio.wait(tasks, timeout=30)
            a, b = (await step_times(c, quiet))[1:], (await step_times(c, loaded))[1:]
    finally:
        server.terminate()
        server.wait(timeout=60)
    ta, tb = statistics.median(a), statistics.median(b)
    return {"benchmark": "live_load", "clients": args.clients, "pollers": args.pollers, "steps": len(a) + 1,
            "status": status, "step_s_no_clients": round(ta, 3), "step_s_with_clients": round(tb, 3),
            "slowdown": round(tb / ta, 3), "errors": len(errors), "error_kinds": sorted(set(errors))[:10],
            "event_latency_s_p50": pct(latencies, 0.5), "event_latency_s_p95": pct(latencies, 0.95),
            "events_delivered": len(latencies), "machine": machine(),
            "torch_threads": args.torch_threads or "opcod serve's default"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--pollers", type=int, default=10)
    ap.add_argument("--steps", type=int, default=6, help="steps per direction of each run (1 round)")
    ap.add_argument("--torch-threads", type=int, default=None,
                    help="the worker's torch threads (default: what opcod serve gives it, app.worker_pool.worker_env)")
    ap.add_argument("--poll", default=",".join(POLLED), help=f"what each poller requests every second, of {list(POLLED)}")
    ap.add_argument("--cache-dir", default=None)
    ap.add_argument("--deadline-s", type=float, default=1800.0)
    ap.add_argument("--no-record", action="store_true", help="do not append to docs/benchmarks.md")
    args = ap.parse_args(argv)
    result = asyncio.run(measure(args))
    print(json.dumps(result))
    if not args.no_record:
        extra = (f" --torch-threads {args.torch_threads}" if args.torch_threads else "") + \
            (f" --poll {args.poll}" if args.poll != ",".join(POLLED) else "")
        record("Live load", f"python benchmarks/live_load.py --clients {args.clients} --pollers {args.pollers} "
               f"--steps {args.steps}{extra}",
               f"step {result['step_s_no_clients']} s -> {result['step_s_with_clients']} s (x{result['slowdown']}), "
               f"errors {result['errors']}, event latency p50 {result['event_latency_s_p50']} s / p95 "
               f"{result['event_latency_s_p95']} s")
    return 0 if result["errors"] == 0 and result["status"] == "finished" else 1


if __name__ == "__main__":
    raise SystemExit(main())
