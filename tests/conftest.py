"""Shared fixtures: a warm-up cache for the tiny students (built once per session) and one full
tiny-preset run that several tests read.

Numeric robustness: ``OPCOD_TEST_THREADS`` sets torch's thread count for the whole session (another
reduction order changes the floats the way another CPU does) and ``OPCOD_TEST_SEED`` the seed of the
tiny runs below; the suite must pass under any of them (``make test`` runs the defaults). The session runs
on the benchmarks' pinned float path (AVX2 kernels on x86), set below before torch loads."""

from __future__ import annotations

import os

import pytest

from opcod_core.bench.floatpath import PINNED, pin

# The benchmark commands pin the CPU float path before torch loads and refuse to run on another path once
# it has loaded (opcod_core.bench.floatpath). Tests call those commands in this process, so the session
# takes the same path from the start, before any test module imports torch.
pin(PINNED)


def pytest_configure(config):
    threads = os.environ.get("OPCOD_TEST_THREADS")
    if threads:
        import torch

        torch.set_num_threads(int(threads))


@pytest.fixture(scope="session")
def tiny_seed() -> int:
    return int(os.environ.get("OPCOD_TEST_SEED", "0"))


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("opcod-cache")


def path_controls(steps_per_direction: int):
    """Run-level controls that make every path of a tiny run occur by construction, whatever the
    tiny students' (near-chance) skills: from the first step chem tutors and phys is muted (round 1:
    direction 1 has no feedback, so its correct siblings give context ``s`` and the rest ``none``;
    direction 2 has chem's feedback on phys's rollouts: kept and discarded, ``s+f`` and ``f``), and
    from round 2 on phys tutors too (feedback in both directions). The round gates themselves are
    still computed and recorded (source ``auto``) before each override recomputes them (``human``)."""
    from opcod_core.controls import ControlBatch, RunOverride, ScriptedControls

    return ScriptedControls({
        0: ControlBatch(run_overrides=[RunOverride("paths-chem", "force_tutor", student="chem"),
                                       RunOverride("paths-phys", "mute_tutor", student="phys")]),
        2 * steps_per_direction: ControlBatch(run_overrides=[
            RunOverride("paths-phys-on", "force_tutor", student="phys")]),
    })


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory, tiny_cache, tiny_seed):
    from opcod_core.config import preset
    from opcod_core.observer import CollectingObserver
    from opcod_core.trainer import Trainer

    # n = 8 rollouts per prompt (the paper's default) so that a rollout usually has a correct sibling:
    # measured with n = 4 on an Intel Xeon, 10 s+f exchanges of 192, too few to be sure on every CPU.
    cfg = preset("tiny", {"seed": tiny_seed, "rollout": {"n": 8}})
    obs = CollectingObserver()
    res = Trainer(cfg, tmp_path_factory.mktemp("tiny-run"), observer=obs, cache_dir=tiny_cache,
                  controls=path_controls(cfg.schedule.steps_per_direction)).run()
    assert res.status == "finished"
    return obs, res.summary
