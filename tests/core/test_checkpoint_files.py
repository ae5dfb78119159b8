"""Checkpoint files (opcod_core.checkpoint): a kill between the directory rename and the LATEST update
leaves a checkpoint that a retry resumes from (before, every retry failed on the existing tag); a save
whose tag was left by an interrupted save replaces it; writes are fsynced."""

from __future__ import annotations

import json
import os

import pytest

from opcod_core import checkpoint as ck


class _Student:
    """Writes a file like a student's weights (the checkpoint module only calls ``save``)."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload

    def save(self, directory, previous=None) -> None:
        directory.mkdir(parents=True)
        (directory / "model.safetensors").write_bytes(self.payload)


def _save(out, tag, next_task, payload=b"w", keep=5):
    return ck.save_checkpoint(out, tag, {"chem": _Student(payload)}, {"next_task": next_task, "events_written": 10 * next_task},
                              keep=keep)


def test_kill_between_rename_and_latest_is_recovered(tmp_path):
    _save(tmp_path, "task-000001", 1)
    root = ck.checkpoint_root(tmp_path)
    newer = _save(tmp_path, "task-000002", 2)
    (root / "LATEST").write_text("task-000001")  # as if killed after the rename, before the pointer update
    assert ck.latest_checkpoint(tmp_path) == newer  # the retry resumes from the complete newer one
    # and a retry that did resume from the older one redoes task 2: its save replaces the orphan
    again = _save(tmp_path, "task-000002", 2, payload=b"redone")
    assert again == newer and (again / "chem" / "model.safetensors").read_bytes() == b"redone"
    assert (root / "LATEST").read_text() == "task-000002"
    with pytest.raises(FileExistsError):
        _save(tmp_path, "task-000002", 2)  # the latest one is never overwritten


def test_incomplete_and_foreign_directories_are_ignored(tmp_path):
    good = _save(tmp_path, "task-000003", 3)
    root = ck.checkpoint_root(tmp_path)
    (root / ".tmp-task-000004").mkdir()                       # a save killed before its rename
    (root / "task-000009").mkdir()                            # no state.json: not complete
    (root / "notes").mkdir()
    (root / "notes" / "state.json").write_text("not json")
    assert ck.latest_checkpoint(tmp_path) == good
    assert ck.latest_checkpoint(tmp_path / "elsewhere") is None


def test_files_are_fsynced_before_they_are_published(tmp_path, monkeypatch):
    synced: list[str] = []
    real = os.fsync

    def spy(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}") if os.path.exists(f"/proc/self/fd/{fd}") else str(fd))
        return real(fd)

    monkeypatch.setattr(ck.os, "fsync", spy)
    path = _save(tmp_path, "task-000001", 1)
    names = [os.path.basename(p) for p in synced]
    assert "model.safetensors" in names and "state.json" in names and ".LATEST.tmp" in names
    assert json.loads((path / "state.json").read_text())["next_task"] == 1


class _Twin:
    """A student whose initial weights file is shared by construction (same base model) and whose own
    weights are its own."""

    def __init__(self, weights: bytes, initial: bytes) -> None:
        self.weights, self.initial = weights, initial

    def save(self, directory, previous=None) -> None:
        (directory / "model").mkdir(parents=True)
        (directory / "model" / "model.safetensors").write_bytes(self.weights)
        (directory / "reference.safetensors").write_bytes(self.initial)
        (directory / "student.json").write_text("{}")


def test_identical_files_of_two_students_are_stored_once(tmp_path):
    """Two students from one base: their identical initial weights (and, before training, identical
    weights) are one file in the checkpoint; different bytes of the same size stay two files."""
    big = ck.LINK_MIN_BYTES
    base, trained = os.urandom(big), os.urandom(big)
    first = ck.save_checkpoint(tmp_path, "t1", {"a": _Twin(base, base), "b": _Twin(base, base)},
                               {"next_task": 1}, keep=5)
    ino = {(s, f): (first / s / f).stat().st_ino for s in "ab" for f in ("reference.safetensors", "model/model.safetensors")}
    assert ino[("a", "reference.safetensors")] == ino[("b", "reference.safetensors")]
    assert ino[("a", "model/model.safetensors")] == ino[("b", "model/model.safetensors")]
    assert (first / "b" / "student.json").stat().st_ino != (first / "a" / "student.json").stat().st_ino  # small
    second = ck.save_checkpoint(tmp_path, "t2", {"a": _Twin(trained, base), "b": _Twin(base, base)},
                                {"next_task": 2}, keep=5)
    assert (second / "a" / "model" / "model.safetensors").stat().st_ino != \
        (second / "b" / "model" / "model.safetensors").stat().st_ino
    assert (second / "a" / "model" / "model.safetensors").read_bytes() == trained
    assert (second / "b" / "model" / "model.safetensors").read_bytes() == base
    assert (second / "b" / "reference.safetensors").stat().st_ino == (second / "a" / "reference.safetensors").stat().st_ino
    assert not list(second.rglob("*.link"))
