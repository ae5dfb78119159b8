"""Checkpoints that make a resumed run identical to an uninterrupted one.

What a checkpoint holds: each student's weights and optimizer state, its initial weights (the
frozen reference, hard-linked from the previous checkpoint) and EMA teacher if any, and the trainer state (the
index of the next task in the run's fixed task list, gate records of the current round, evaluation
results so far, pending human exchanges, the number of events written before it). Nothing else is
needed for exactness because every random choice in the trainer is a pure function of
(seed, global step, purpose): sampling seeds, the data order and the choice of the correct sibling.

Writes are atomic: a checkpoint is written into a temporary directory and renamed (tags are unique
per save, so a checkpoint is never replaced in place), then the ``LATEST`` pointer is replaced, so a
worker killed at any moment leaves the previous checkpoint usable.
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
    if final.exists():
        raise FileExistsError(f"checkpoint {final} already exists (tags are unique per save)")
    os.replace(tmp, final)
    pointer_tmp = root / ".LATEST.tmp"
    pointer_tmp.write_text(tag)
    os.replace(pointer_tmp, root / "LATEST")
    _prune(root, keep, current=tag)
    return final


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
    root = checkpoint_root(out_dir)
    ptr = root / "LATEST"
    if not ptr.exists():
        return None
    path = root / ptr.read_text().strip()
    return path if (path / "state.json").exists() else None


def load_state(path: Path) -> dict[str, Any]:
    return json.loads((Path(path) / "state.json").read_text())
