"""Helpers shared by the trainer tests: a small tiny-preset config and a run collecting its events."""

from __future__ import annotations

from opcod_core.config import preset
from opcod_core.observer import CollectingObserver
from opcod_core.trainer import Trainer


def small(rounds: int = 2, steps: int = 2, **over):
    """The tiny preset with R x K = rounds x steps and nested ``over`` applied on top."""
    return preset("tiny", {"schedule": {"rounds": rounds, "steps_per_direction": steps}, **over})


def run(cfg, tmp_path, cache, controls=None, resume=False, out="out"):
    obs = CollectingObserver()
    tr = Trainer(cfg, tmp_path / out, observer=obs, controls=controls, cache_dir=cache)
    res = tr.run(resume=resume)
    return tr, obs, res
