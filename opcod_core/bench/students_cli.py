"""``opcod bench students``: the v3 specialists built per build seed and torch thread count, or the thread
probe (``opcod_core.bench.students``, ``opcod_core.bench.threads_check``)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path


def _specialists(text: str | None) -> tuple[str, ...] | None:
    """``--specialists``: the strong domains of the specialists to build (default all of the v3 world)."""
    from opcod_core.presets import WORLD3_DOMAINS

    if not text:
        return None
    names = tuple(x.strip() for x in text.split(","))
    unknown = [n for n in names if n not in WORLD3_DOMAINS]
    if unknown:
        raise SystemExit(f"--specialists: {', '.join(unknown)} not among {', '.join(WORLD3_DOMAINS)}")
    return names


def cmd_students(args) -> int:
    from opcod_core.bench.students import machine_text, run_probe, run_spread
    from opcod_core.bench.students_report import probe_path, write_spread_report
    from opcod_core.bench.threads_check import write_probe

    seeds = [int(x) for x in args.build_seeds.split(",")]
    threads = [int(x) for x in args.threads.split(",")]
    command = "opcod " + " ".join(shlex.quote(a) for a in getattr(args, "argv", []))
    if args.probe_steps:
        results = run_probe(seeds, threads, args.probe_steps, jobs=args.jobs,
                            specialists=_specialists(args.specialists), log=lambda m: print(m, file=sys.stderr, flush=True))
        print(f"probe: {write_probe(results, probe_path(args.out), command, machine_text(), args.probe_steps)}")
        return 0 if all(r["identical"] for r in results) else 1
    rows = run_spread(seeds, threads, Path(args.cache_dir), jobs=args.jobs, steps=args.steps,
                      decay_steps=args.decay_steps, rows_dir=Path(args.rows_dir) if args.rows_dir else None,
                      specialists=_specialists(args.specialists), read_only=args.report_only,
                      log=lambda m: print(m, file=sys.stderr, flush=True))
    print(f"report: {write_spread_report(rows, Path(args.out), command, machine_text())}")
    return 0 if rows and all(r["passed"] for r in rows) else 1


def register_students(bsub) -> None:
    sp = bsub.add_parser("students", help="build the v3 specialists per build seed and torch thread count, "
                         "report the spread of their knowledge split")
    sp.add_argument("--build-seeds", default="0,1,2", help="build seeds (comma-separated)")
    sp.add_argument("--threads", default="1,2", help="torch thread counts (comma-separated)")
    sp.add_argument("--steps", type=int, default=None,
                    help="warm-up steps, with the converge schedule the most before the decay (default: the preset's)")
    sp.add_argument("--decay-steps", type=int, default=None, help="decay steps of the converge schedule "
                    "(default: the preset's)")
    sp.add_argument("--jobs", type=int, default=2, help="builds in parallel processes")
    sp.add_argument("--cache-dir", default="/tmp/opcod-students", help="root of the per-thread-count caches")
    sp.add_argument("--out", default="docs/results/fidelity-v3-students.md", help="report path (.md; .json beside)")
    sp.add_argument("--rows-dir", default=None, help="where each build's row is kept, to commit so the spread "
                    "resumes on another machine (e.g. docs/results/fidelity-v3-students-rows; default: the cache)")
    sp.add_argument("--specialists", default=None, help="strong domains of the specialists to build or probe "
                    "(comma-separated; default: chemistry,physics,electricity)")
    sp.add_argument("--report-only", action="store_true", help="build nothing: the report over the rows already "
                    "built for these seeds, thread counts and specialists (a spread that spans sessions)")
    sp.add_argument("--probe-steps", type=int, default=0, help="instead of building: run the first N warm-up "
                    "steps of every specialist's first attempt under each thread count and compare them step by step "
                    "(opcod_core.bench.threads_check; kept next to --out as <stem>-threads-probe.json, read by the report)")
    sp.set_defaults(func=cmd_students)
