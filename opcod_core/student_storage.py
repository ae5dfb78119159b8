"""A student's part of a checkpoint: its weights (a ``save_pretrained`` directory, ``model/``), optimizer
state, initial weights (the frozen reference, hard-linked from the previous checkpoint: they never
change) and EMA teacher. ``opcod_core.checkpoint`` writes the run's checkpoint around it; ``opcod
export-model`` copies ``model/`` out as a plain transformers directory."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from opcod_core import models
from opcod_core.reference import EMAWeights, WeightSnapshot


#: What a student's checkpoint directory says about itself: how many optimizer updates its weights have.
STUDENT_META = "student.json"


def save_student(rt, directory: Path, with_optimizer: bool = True, previous: Path | None = None) -> None:
    """Weights, optimizer state, the initial weights and the EMA. ``previous``: this student's
    directory in the checkpoint this run wrote or resumed from last; its (immutable) initial
    weights are hard-linked instead of written again, and when the student has not been updated since
    (the tutor of a direction: only the tutee trains), every file is hard-linked: a checkpoint then costs
    the disk one student, not two."""
    if previous is not None and _unchanged_since(rt, Path(previous)) and _link_tree(Path(previous), directory):
        return
    directory.mkdir(parents=True, exist_ok=True)
    (directory / STUDENT_META).write_text(json.dumps({"updates": int(rt.updates)}))
    models.save_model(rt.model, rt.tokenizer, directory / "model")
    if with_optimizer:
        torch.save({"optimizer": rt.optimizer.state_dict(), "updates": rt.updates},
                   directory / "optimizer.pt")
    if rt.reference is not None:
        ref, prev = directory / "reference.safetensors", (Path(previous) / "reference.safetensors"
                                                         if previous else None)
        try:
            if prev is None or not prev.exists():
                raise FileNotFoundError(prev)
            os.link(prev, ref)
        except OSError:
            rt.reference.save(ref)
    if rt.ema is not None:
        rt.ema.save(directory / "ema.safetensors")


def _unchanged_since(rt, previous: Path) -> bool:
    """Whether ``previous`` holds this student at its current weights (same update count, complete)."""
    try:
        meta = json.loads((previous / STUDENT_META).read_text())
    except (OSError, ValueError):
        return False
    return meta.get("updates") == int(rt.updates) and (previous / "optimizer.pt").exists()


def _link_tree(src: Path, dst: Path) -> bool:
    """Hard-link every file of ``src`` into ``dst``; False (and ``dst`` removed) when linking fails."""
    import shutil

    try:
        for path in src.rglob("*"):
            target = dst / path.relative_to(src)
            if path.is_dir():
                target.mkdir(parents=True, exist_ok=True)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                os.link(path, target)
        return True
    except OSError:
        shutil.rmtree(dst, ignore_errors=True)
        return False


def load_student(rt, directory: Path) -> None:
    """Restore what ``save_student`` wrote into the live student (weights, optimizer, initial weights, EMA)."""
    from safetensors.torch import load_file

    files = sorted((directory / "model").glob("*.safetensors"))
    state: dict = {}
    for f in files:
        state.update(load_file(str(f), device=str(rt.device)))
    missing, unexpected = rt.model.load_state_dict(state, strict=False)
    real_missing = [m for m in missing if not m.endswith("lm_head.weight")]
    if real_missing or unexpected:
        raise RuntimeError(f"checkpoint {directory} does not match model {rt.name}: "
                           f"missing {real_missing[:3]}, unexpected {unexpected[:3]}")
    if getattr(rt.model.config, "tie_word_embeddings", False):
        rt.model.tie_weights()
    opt = directory / "optimizer.pt"
    if opt.exists():
        blob = torch.load(opt, map_location=rt.device, weights_only=True)
        rt.optimizer.load_state_dict(blob["optimizer"])
        rt.updates = int(blob["updates"])
    elif (directory / STUDENT_META).exists():
        # an older checkpoint (retention keeps optimizer state in the newest only): a fresh optimizer, at
        # the right place of the learning-rate schedule
        rt.updates = int(json.loads((directory / STUDENT_META).read_text())["updates"])
    # A checkpoint without them (written before they existed) keeps the build's initial weights
    # and starts the EMA at the loaded weights.
    if (directory / "reference.safetensors").exists():
        rt.reference = WeightSnapshot.load(directory / "reference.safetensors")
    if rt.ema_rate:
        rt.ema = EMAWeights.of(rt.model, rt.ema_rate)
        if (directory / "ema.safetensors").exists():
            rt.ema.load(directory / "ema.safetensors")
    rt.backend.sync_weights(rt.model)
