"""Store at scale: the exchange lists, details, pages and live blocks at 10,000 and 1,000,000 exchanges, on
SQLite and PostgreSQL, against the bare indexed SQL for the same rows.

    python benchmarks/store_scale.py [--sizes 10000,1000000] [--backends sqlite,postgres] [--reps 30]
                                     [--quick] [--no-record]

For each backend and size: a fresh database migrated by Alembic, one synthetic run of that many exchanges
written with ``executemany`` (``benchmarks/store/synth.py``: the recorder's rows and per-token arrays,
a step per 64 exchanges with its metrics, break probes and event rows), then every probe of
``benchmarks/store/probes.py`` timed through the app under uvicorn on a loopback port (HTTP, middleware,
routing, services, templates; ``floor`` is ``/healthz``, the cost of any request) and the same rows
through bare SQL. PostgreSQL is a throw-away local server
(``scripts/local_postgres.py``). Prints one JSON object: per backend and size, p50/p95 of each probe;
then the goals' ratios: list and detail p95 at the largest size over the smallest (goal <= 1.2) and each
rendered page's p50 over the bare SQL for its rows (goal <= 3). Appends lines to docs/benchmarks.md.
``--quick``: 500 and 2,000 exchanges, 5 repetitions (the test suite's smoke run; not a timing).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT))

from record import machine, record  # noqa: E402
from serve_thread import serve_in_thread  # noqa: E402
from store.backends import backend_server, unknown_backends  # noqa: E402
from store.probes import PAGE_VS_SQL, app_probes, check_same_rows, sql_probes, time_probe  # noqa: E402
from store.synth import Shape, create_run, write_run  # noqa: E402


@contextmanager
def serve_app(url: str, data_dir: Path) -> Iterator[httpx.Client]:
    """The app under uvicorn on a loopback port (a thread of this process), and a keep-alive client: the
    whole HTTP stack a browser's request goes through, without a worker."""
    from app.main import create_app
    from app.settings import Settings

    app = create_app(Settings(data_dir=data_dir, database_url=url))
    with serve_in_thread(app) as base, httpx.Client(base_url=base, timeout=120) as client:
        yield client


def shape_of(size: int) -> Shape:
    """The synthetic run of ``size`` exchanges: 50 steps per direction, or for the quick sizes (under 100
    steps) a quarter of the steps, so both directions and more than one round hold rows for the filters."""
    steps = Shape(exchanges=size).steps
    return Shape(exchanges=size, steps_per_direction=50 if steps >= 100 else max(1, steps // 4))


def measure(url: str, size: int, reps: int, data_dir: Path, log=print) -> dict:
    """Build the run of ``size`` exchanges at ``url`` (an empty database) and time every probe."""
    from sqlalchemy import select

    from app.db import make_engine, upgrade
    from app.models import Exchange

    upgrade(url)
    engine = make_engine(url)
    shape = shape_of(size)
    t0 = time.perf_counter()
    with engine.begin() as conn:
        run_id = create_run(conn, shape)
        counts = write_run(conn, shape, run_id,
                           progress=lambda n: log(f"  {n:,} exchanges") if n % 100_000 < 5_000 else None)
    if engine.dialect.name == "postgresql":
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("VACUUM ANALYZE")
    else:
        with engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")
    write_s = time.perf_counter() - t0
    with engine.connect() as conn:
        ids = list(conn.execute(select(Exchange.id).where(Exchange.run_id == run_id).order_by(Exchange.id)).scalars())
    out: dict = {"exchanges": size, "rows": counts, "write_s": round(write_s, 1),
                 "write_exchanges_per_s": round(size / write_s), "probes": {}}
    with serve_app(url, data_dir) as client:
        with engine.connect() as conn:
            out["lists_checked"] = check_same_rows(client, conn, run_id, shape.rounds)
        for probe in app_probes(client, run_id, ids, shape.rounds):
            out["probes"][probe.name] = time_probe(probe, reps)
    with engine.connect() as conn:
        for probe in sql_probes(conn, run_id, ids, shape.rounds):
            out["probes"][probe.name] = time_probe(probe, reps)
    engine.dispose()
    return out


def ratios(by_size: dict[int, dict]) -> dict:
    """The goals' ratios: p95 of each list and detail probe at the largest size over the smallest, and
    p50 of each rendered page (and API answer) over the bare SQL for its rows, at every size."""
    sizes = sorted(by_size)
    small, large = by_size[sizes[0]]["probes"], by_size[sizes[-1]]["probes"]
    scale = {name: round(large[name]["p95_ms"] / small[name]["p95_ms"], 2)
             for name in small if name.startswith(("api list", "api detail"))}
    vs_sql = {str(n): {page: round(by_size[n]["probes"][page]["p50_ms"] / by_size[n]["probes"][sql]["p50_ms"], 2)
                       for page, sql in PAGE_VS_SQL.items()} for n in sizes}
    return {"p95_largest_over_smallest": scale, "p50_page_over_sql": vs_sql}


def run_backend(backend: str, sizes: list[int], reps: int, tmp: Path, server=None, log=print) -> dict:
    by_size: dict[int, dict] = {}
    for size in sizes:
        log(f"{backend}: {size:,} exchanges")
        if backend == "sqlite":
            url = f"sqlite:///{tmp / f'store-{size}.db'}"
            by_size[size] = measure(url, size, reps, tmp / f"data-sqlite-{size}", log)
            (tmp / f"store-{size}.db").unlink()
        else:
            name = f"opcod_bench_{uuid.uuid4().hex[:8]}"
            url = server.create_database(name)
            try:
                by_size[size] = measure(url, size, reps, tmp / f"data-pg-{size}", log)
            finally:
                server.drop_database(name)
    return {"sizes": {str(n): r for n, r in by_size.items()}, "ratios": ratios(by_size)}


def summary(backend: str, res: dict) -> str:
    sizes = list(res["sizes"])
    parts = []
    for n in sizes:
        p = res["sizes"][n]["probes"]
        parts.append(f"{int(n):,}: list p95 {p['api list: first page']['p95_ms']} ms (deep "
                     f"{p['api list: deep cursor']['p95_ms']}, worst filter "
                     f"{max(v['p95_ms'] for k, v in p.items() if k.startswith('api list: ') and 'page' not in k and 'cursor' not in k)}), "
                     f"detail p95 {p['api detail']['p95_ms']} ms, run page p50 {p['page: run']['p50_ms']} ms, "
                     f"worst block p95 {max(v['p95_ms'] for k, v in p.items() if k.startswith('block: '))} ms, "
                     f"charts p95 {p['page: run charts.json']['p95_ms']} ms")
    r = res["ratios"]
    worst_scale = max(r["p95_largest_over_smallest"].items(), key=lambda kv: kv[1])
    big = r["p50_page_over_sql"][sizes[-1]]
    return (f"{backend}: " + "; ".join(parts) + f"; p95 {sizes[-1]} / {sizes[0]}: worst {worst_scale[0]} "
            f"x{worst_scale[1]}; page / bare SQL at {int(sizes[-1]):,}: "
            + ", ".join(f"{k} x{v}" for k, v in big.items()))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,1000000")
    ap.add_argument("--backends", default="sqlite,postgres")
    ap.add_argument("--reps", type=int, default=30)
    ap.add_argument("--quick", action="store_true", help="500 and 2,000 exchanges, 5 repetitions (smoke)")
    ap.add_argument("--no-record", action="store_true", help="do not append to docs/benchmarks.md")
    args = ap.parse_args(argv)
    sizes = [500, 2000] if args.quick else [int(s) for s in args.sizes.split(",")]
    reps = 5 if args.quick else args.reps
    backends = args.backends.split(",")
    if unknown_backends(backends):
        ap.error(f"--backends: unknown {unknown_backends(backends)} (sqlite, postgres)")
    log = (lambda msg: print(msg, file=sys.stderr, flush=True))
    result: dict = {"machine": machine(), "reps": reps, "backends": {}}
    with tempfile.TemporaryDirectory(prefix="opcod-bench-store-") as tmp:
        for backend in backends:
            with backend_server(backend, ("shared_buffers=256MB",)) as server:
                result["backends"][backend] = run_backend(backend, sizes, reps, Path(tmp), server, log)
    print(json.dumps(result))
    if not args.no_record:
        cmd = "python benchmarks/store_scale.py " + " ".join(argv if argv is not None else sys.argv[1:])
        for backend, res in result["backends"].items():
            record("Store at scale", cmd.strip(), summary(backend, res))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    raise SystemExit(main())
