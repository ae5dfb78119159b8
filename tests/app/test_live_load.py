"""Live load, small: a training run watched by open event streams and polling clients through a live
``opcod serve`` completes with no client error and every stream receiving the run's events
(``benchmarks/live_load.py`` prints the figures at 50 clients; timings are not asserted here)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

from live_load import measure  # noqa: E402

pytestmark = pytest.mark.slow


def test_clients_watching_a_run_see_no_error(tiny_cache):
    args = argparse.Namespace(clients=8, pollers=2, steps=1, cache_dir=str(tiny_cache), deadline_s=900.0,
                              torch_threads=None, poll="run,exchanges,page")
    result = asyncio.run(measure(args))
    assert result["status"] == "finished" and result["errors"] == 0, result
    assert result["events_delivered"] >= 8 and result["step_s_with_clients"] > 0, result
