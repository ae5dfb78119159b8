"""``opcod bench drift``: the per-step drift metrics of headless runs side by side (``opcod_core.bench.drift``),
optionally after the knowledge split of the students the first run started from (``measure_world``).
Report code only: outside the run cache's code key (``opcod_core.bench.runcache.CODE_EXCLUDED``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def cmd_drift(args) -> int:
    from opcod_core.bench.drift import write_drift_report

    runs = []
    for spec in args.runs:
        label, sep, directory = spec.partition("=")
        if not sep or not label or not directory:
            raise SystemExit(f"drift: expected LABEL=DIR, got {spec!r}")
        runs.append((label, directory))
    preamble = Path(args.preamble).read_text() if args.preamble else ""
    try:
        world = _knowledge_split(runs[0], args.knowledge_split, args.cache_dir) if args.knowledge_split else None
        path = write_drift_report(runs, args.out, block=args.block, preamble=preamble, world=world)
    except (FileNotFoundError, ValueError) as exc:
        print(f"drift: {exc}", file=sys.stderr)
        return 2
    print(f"report: {path}")
    return 0


def _knowledge_split(run: tuple[str, str], k: int, cache_dir: str) -> dict:
    """The knowledge split of the students ``run`` (LABEL, DIR) started from: its ``config.json``, the
    students read from (or built into) ``cache_dir``, the whole validation split at avg@``k``."""
    from opcod_core.bench.world import measure_world
    from opcod_core.config import RunConfig
    from opcod_core.data import load_dataset
    from opcod_core.executors import build_students
    from opcod_core.trainer import data_spec

    path = Path(run[1]) / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{run[0]}: no config.json in {run[1]} (needed by --knowledge-split)")
    cfg = RunConfig.from_dict(json.loads(path.read_text()))
    data = load_dataset(data_spec(cfg))
    world = measure_world(cfg, build_students(cfg, data, Path(cache_dir)), data, "validation", k=k, max_items=None)
    return {"split": "validation", "k": k, "students": [st.name for st in cfg.students],
            "domains": list(cfg.data.domains), "strong": {st.name: st.strong_domain for st in cfg.students},
            "world": world}


def register_drift(bsub, default_cache_dir) -> None:
    dr = bsub.add_parser("drift", help="per-step drift metrics and per-round accuracy of headless runs, side by side")
    dr.add_argument("runs", nargs="+", metavar="LABEL=DIR", help="run directories written by `opcod train --out`")
    dr.add_argument("--out", default="docs/results/drift.md", help="report path (.md; a .json is written beside it)")
    dr.add_argument("--block", type=int, default=10, help="steps averaged per table row")
    dr.add_argument("--preamble", default=None, help="a Markdown file placed before the tables (the protocol)")
    dr.add_argument("--knowledge-split", type=int, default=None, metavar="K",
                    help="also measure the first run's students before training (validation avg@K: plain, with s, "
                    "with f, with s+f, with the peer's feedback); they are read from --cache-dir")
    dr.add_argument("--cache-dir", default=str(default_cache_dir()), help="warm-up cache of the students "
                    "(with --knowledge-split; default ~/.cache/opcod)")
    dr.set_defaults(func=cmd_drift)
