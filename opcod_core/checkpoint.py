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
Step checkpoints beyond ``keep`` are deleted; round-end checkpoints are kept (replays may load them).
"""

from __future__ import annotations

import json
import os
import shutil
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
    final = root / tag
    tmp = root / f".tmp-{tag}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for name, rt in students.items():
        rt.save(tmp / name, previous=Path(previous) / name if previous else None)
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
    return final


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
