"""``opcod gc``: give back the disk that runs no longer need.

What it removes (``--dry-run`` only reports), and why each is safe:
- run directories under ``<data_dir>/runs`` whose run no longer exists in the database (a deleted run whose
  files could not all be removed, or a database that was reset): nothing can resume, fork or replay them;
- temporary checkpoint directories (``checkpoints/.tmp-*``) left by a save that was killed: never complete,
  never offered; skipped for runs that are running (their worker may be writing one);
- optimizer state in every checkpoint but the newest of each run that is not running, and in all of them
  for a finished or cancelled run (retention for runs written before it existed;
  ``opcod_core.checkpoint.prune_optimizer_state``): only a resume needs it, and a resume starts from the
  newest.
Checkpoint rows whose files are gone are marked pruned, so forks and replays refuse them with 409.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select, update

from app.db import make_engine, session_factory, session_scope
from app.models import Checkpoint, Run
from opcod_core.checkpoint import checkpoint_root, latest_checkpoint


@dataclass
class GcReport:
    orphan_runs: list[str] = field(default_factory=list)
    temp_dirs: list[str] = field(default_factory=list)
    optimizer_files: list[str] = field(default_factory=list)
    marked_pruned: int = 0
    bytes_freed: int = 0

    def lines(self, dry_run: bool) -> list[str]:
        verb = "would free" if dry_run else "freed"
        return [f"orphan run directories: {len(self.orphan_runs)}", f"temporary checkpoint directories: "
                f"{len(self.temp_dirs)}", f"optimizer states outside the newest checkpoint: {len(self.optimizer_files)}",
                f"checkpoint rows marked pruned: {self.marked_pruned}", f"{verb} {self.bytes_freed / 2**20:.1f} MiB"]


def _size(path: Path) -> int:
    """Bytes that removing ``path`` frees (files hard-linked elsewhere free nothing)."""
    if path.is_file():
        st = path.stat()
        return st.st_size if st.st_nlink == 1 else 0
    return sum(_size(f) for f in path.rglob("*") if f.is_file())


def collect(settings, dry_run: bool = False) -> GcReport:
    report = GcReport()
    runs_dir = settings.runs_dir
    engine = make_engine(settings.database_url)
    factory = session_factory(engine)
    try:
        with factory() as s:
            runs = {r.id: r.status for r in s.execute(select(Run.id, Run.status))}
        for d in sorted(runs_dir.iterdir()) if runs_dir.is_dir() else []:
            if not d.is_dir():
                continue
            run_id = int(d.name) if d.name.isdigit() else None
            if run_id not in runs:
                report.orphan_runs.append(str(d))
                report.bytes_freed += _size(d)
                if not dry_run:
                    shutil.rmtree(d, ignore_errors=True)
                continue
            if runs[run_id] == "running":
                continue
            root = checkpoint_root(d)
            if not root.is_dir():
                continue
            for tmp in root.glob(".tmp-*"):
                report.temp_dirs.append(str(tmp))
                report.bytes_freed += _size(tmp)
                if not dry_run:
                    shutil.rmtree(tmp, ignore_errors=True)
            # a run that will never resume needs no optimizer state at all; another keeps its newest
            newest = latest_checkpoint(d) if runs[run_id] not in ("finished", "cancelled") else None
            for opt in root.glob("*/*/optimizer.pt"):
                if newest is not None and opt.parent.parent == newest:
                    continue
                report.optimizer_files.append(str(opt))
                report.bytes_freed += _size(opt)
                if not dry_run:
                    opt.unlink(missing_ok=True)
        with session_scope(factory) as s:
            rows = s.execute(select(Checkpoint.id, Checkpoint.path).where(Checkpoint.pruned.is_(False))).all()
            gone = [cid for cid, path in rows if not (Path(path) / "state.json").exists()]
            report.marked_pruned = len(gone)
            if gone and not dry_run:
                s.execute(update(Checkpoint).where(Checkpoint.id.in_(gone)).values(pruned=True)
                          .execution_options(synchronize_session=False))
    finally:
        engine.dispose()
    return report


def cmd_gc(args) -> int:
    from app.db import upgrade
    from app.settings import get_settings

    settings = get_settings()
    upgrade(settings.database_url)
    report = collect(settings, dry_run=args.dry_run)
    for line in report.lines(args.dry_run):
        print(line, file=sys.stdout)
    return 0
