"""Checkpoints that make a resumed run identical to an uninterrupted one.

What a checkpoint holds: each student's weights and optimizer state, its initial weights (the
frozen reference, hard-linked from the previous checkpoint) and EMA teacher if any, and the trainer state (the
index of the next task in the run's fixed task list, gate records of the current round, evaluation
results so far, pending human exchanges, the number of events written before it). Nothing else is
needed for exactness because every random choice in the trainer is a pure function of
(seed, global step, purpose): sampling seeds, the data order and the choice of the correct sibling.

Writes are atomic and durable: a checkpoint is written into a temporary directory, every file and the
directory are fsynced, the directory is renamed (tags are unique per save) and the parent fsynced, then
the ``LATEST`` pointer is replaced the same way. A worker killed (or a machine that loses power) at any
moment leaves the previous checkpoint usable. A kill between the rename and the pointer update leaves a
complete checkpoint that ``LATEST`` does not name: ``latest_checkpoint`` therefore returns the newest
complete checkpoint (by ``next_task``, then events written), with ``LATEST`` only breaking ties, so a retry
resumes from it instead of redoing its work and failing on the existing tag; and a save whose tag exists
(a save interrupted after its rename, never resumed from) replaces it.
Retention (disk): step checkpoints beyond ``keep`` are deleted; round-end checkpoints are kept (replays and
forks may load them); optimizer state is kept in the newest checkpoint only (``prune_optimizer_state``), and
a student that did not change since the previous checkpoint (the tutor of a direction) is hard-linked, not
written again (``student_storage.save_student``); files that are byte-identical between the students of
one checkpoint are hard-linked to one copy (``link_identical_files``: two students from one base model
share their initial weights, and before either trains, their weights). Before writing, ``check_free_space`` refuses a save that
would not fit (the run fails with a clear error instead of a half-written disk).
"""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import stat
from pathlib import Path
from typing import Any


def checkpoint_root(out_dir: Path) -> Path:
    return Path(out_dir) / "checkpoints"


def save_checkpoint(out_dir: Path, tag: str, students: dict, state: dict[str, Any], keep: int,
                    permanent: bool = False, previous: Path | None = None) -> Path:
    """``previous``: the checkpoint this run wrote or resumed from last (its students' immutable
    initial weights are hard-linked rather than written again)."""
    root = checkpoint_root(out_dir)
    root.mkdir(parents=True, exist_ok=True)
    check_free_space(root, Path(previous) if previous else None)
    final = root / tag
    tmp = root / f".tmp-{tag}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for name, rt in students.items():
        rt.save(tmp / name, previous=Path(previous) / name if previous else None)
    link_identical_files(tmp)
    (tmp / "state.json").write_text(json.dumps({**state, "permanent": permanent}, indent=1))
    fsync_tree(tmp)
    if final.exists():
        if _pointer(root) == tag:
            raise FileExistsError(f"checkpoint {final} already exists and is the latest (tags are unique per save)")
        shutil.rmtree(final)  # left by a save interrupted after its rename: this save redoes the same work
    os.replace(tmp, final)
    fsync_dir(root)
    pointer_tmp = root / ".LATEST.tmp"
    with open(pointer_tmp, "w") as fh:
        fh.write(tag)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(pointer_tmp, root / "LATEST")
    fsync_dir(root)
    _prune(root, keep, current=tag)
    prune_optimizer_state(root, current=tag)
    return final


LINK_MIN_BYTES = 1 << 20  # smaller files (configs, counters) are not worth a comparison


def link_identical_files(directory: Path) -> int:
    """Hard-link each file of a student in ``directory`` (a checkpoint being written) to the same path of
    an earlier student when the bytes are identical, so the checkpoint holds one copy. Measured on the demo
    (two SmolLM2-135M students from one base): each checkpoint held both students' initial weights (0.54 GB
    each), and the first one also two identical sets of weights. Files already linked, of different sizes
    or under ``LINK_MIN_BYTES`` are not compared; a comparison stops at the first differing byte. Files of
    a checkpoint are never modified after it is written (pruning unlinks), so sharing them is safe.
    Returns the bytes saved."""
    students = sorted(p for p in directory.iterdir() if p.is_dir())
    saved = 0
    for i, later in enumerate(students):
        for path in sorted(later.rglob("*")):
            if not path.is_file() or path.is_symlink():
                continue
            st = path.stat()
            if st.st_size < LINK_MIN_BYTES:
                continue
            twin = _identical_twin(path, st, [earlier / path.relative_to(later) for earlier in students[:i]])
            if twin is not None:
                staged = path.with_name(path.name + ".link")
                os.link(twin, staged)
                os.replace(staged, path)
                saved += st.st_size
    return saved


def _identical_twin(path: Path, st: os.stat_result, candidates: list[Path]) -> Path | None:
    """The first candidate with the bytes of ``path`` that is not already the same file (None when ``path``
    is already linked to one, or none matches)."""
    for twin in candidates:
        try:
            tst = twin.stat()
        except OSError:
            continue
        if tst.st_ino == st.st_ino and tst.st_dev == st.st_dev:
            return None
        if stat.S_ISREG(tst.st_mode) and tst.st_size == st.st_size and filecmp.cmp(twin, path, shallow=False):
            return twin
    return None


def prune_optimizer_state(root: Path, current: str | None) -> int:
    """Delete the optimizer state of every checkpoint but ``current`` (the newest; None: of all of them, for a
    run that is over and will never resume): only a resume needs it, and a resume starts from the newest.
    Weights stay, so forks and replays work from every checkpoint (a fork from one without optimizer state
    starts a fresh optimizer at the right step of the schedule). Returns bytes freed (files still
    hard-linked from another checkpoint free nothing)."""
    freed = 0
    if not root.is_dir():
        return 0
    for d in root.iterdir():
        if d.name == current or d.name.startswith(".") or not d.is_dir():
            continue
        for opt in d.glob("*/optimizer.pt"):
            try:
                st = opt.stat()
                opt.unlink()
                freed += st.st_size if st.st_nlink == 1 else 0
            except OSError:
                pass
    return freed


#: Free space kept besides the estimated size of a checkpoint (logs, the database, the other runs).
FREE_SPACE_MARGIN = 256 << 20


class NotEnoughDiskSpace(OSError):
    """A checkpoint would not fit on the disk."""


def check_free_space(root: Path, previous: Path | None) -> None:
    """Raise ``NotEnoughDiskSpace`` when the disk cannot hold another checkpoint as large as ``previous``
    (files hard-linked into it are counted: the worst case) plus ``FREE_SPACE_MARGIN``."""
    if previous is None or not previous.is_dir():
        return
    need = sum(f.stat().st_size for f in previous.rglob("*") if f.is_file()) + FREE_SPACE_MARGIN
    free = shutil.disk_usage(root).free
    if free < need:
        raise NotEnoughDiskSpace(f"not enough disk space for a checkpoint in {root}: {free / 2**30:.2f} GiB free, "
                                 f"about {need / 2**30:.2f} GiB needed. Free space (opcod gc, delete old runs) "
                                 "and resume the run: it continues from its last checkpoint")


def fsync_tree(path: Path) -> None:
    """fsync every file under ``path`` and every directory (so a rename of ``path`` publishes durable data)."""
    for dirpath, _dirnames, filenames in os.walk(path):
        for name in filenames:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(dirpath))


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _pointer(root: Path) -> str | None:
    ptr = root / "LATEST"
    return ptr.read_text().strip() if ptr.exists() else None


def _prune(root: Path, keep: int, current: str) -> None:
    steps = []
    for d in root.iterdir():
        if d.is_dir() and not d.name.startswith(".") and (d / "state.json").exists():
            st = json.loads((d / "state.json").read_text())
            if not st.get("permanent"):
                steps.append((st["next_task"], d))
    steps.sort()
    for _, d in steps[:-keep]:
        if d.name != current:
            shutil.rmtree(d, ignore_errors=True)


def latest_checkpoint(out_dir: Path) -> Path | None:
    """The newest complete checkpoint (module docstring), or None."""
    root = checkpoint_root(out_dir)
    if not root.is_dir():
        return None
    pointer = _pointer(root)
    best: tuple | None = None
    for d in root.iterdir():
        if d.name.startswith(".") or not (d / "state.json").is_file():
            continue
        try:
            st = json.loads((d / "state.json").read_text())
            key = (int(st["next_task"]), int(st.get("events_written", 0)), d.name == pointer, d.name)
        except (ValueError, KeyError, TypeError, OSError):
            continue  # not a checkpoint this code wrote
        if best is None or key > best[0]:
            best = (key, d)
    return best[1] if best else None


def load_state(path: Path) -> dict[str, Any]:
    return json.loads((Path(path) / "state.json").read_text())
