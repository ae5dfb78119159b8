"""Shared fixtures: a warm-up cache for the tiny students (built once per session) and one full
tiny-preset run that several tests read."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("opcod-cache")


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_cache):
    from opcod_core.config import preset
    from opcod_core.observer import CollectingObserver
    from opcod_core.trainer import Trainer

    obs = CollectingObserver()
    res = Trainer(preset("tiny"), tmp_path_factory.mktemp("tiny-run"), observer=obs, cache_dir=tiny_cache).run()
    assert res.status == "finished"
    return obs, res.summary
