"""The store, ingest and observer benchmarks in their ``--quick`` form (smoke runs, not timings): each runs
end to end on both backends and checks its own fairness (the sides fetch or write the same rows)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))


def _json_of(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.mark.slow
def test_store_benchmark_quick(capsys):
    import store_scale

    assert store_scale.main(["--quick", "--no-record"]) == 0
    out = _json_of(capsys)
    for backend in ("sqlite", "postgres"):
        res = out["backends"][backend]
        assert set(res["sizes"]) == {"500", "2000"}
        for size, r in res["sizes"].items():
            rows = r["rows"]
            assert rows["exchange"] == rows["rollout"] == int(size)
            assert rows["event"] == rows["exchange"] + rows["step"] + rows["break_sample"]
            # the API's pages are the bare SQL's rows, unfiltered and per filter (only the rare human_edited
            # filter, 1 in 1,000 exchanges, may select none)
            assert r["lists_checked"] >= (8 if int(size) < 1000 else 9)
            assert all(0 < p["p50_ms"] <= p["p95_ms"] for p in r["probes"].values())
            assert {"page: run", "block: feed", "sql run page rows", "floor: GET /healthz"} <= set(r["probes"])
        assert set(res["ratios"]["p50_page_over_sql"]["2000"]) == {"page: exchanges", "page: exchange", "page: run",
                                                                   "api list: first page", "api detail"}


@pytest.mark.slow
def test_ingest_benchmark_quick(capsys):
    """Both sides write the same rows (the benchmark refuses otherwise)."""
    import ingest

    assert ingest.main(["--quick", "--no-record"]) == 0
    for backend, r in _json_of(capsys)["backends"].items():
        assert r["rows"]["exchange"] == 640 and r["rows"]["step"] == 10, backend
        assert r["raw_exchanges_per_s"] > 0 and r["recorder_exchanges_per_s"] > 0


@pytest.mark.slow
def test_observer_benchmark_quick(capsys, tiny_cache):
    """... and leaves the process's torch thread count as it found it (later tests in this process compare
    runs float for float, which another thread count would change)."""
    import torch

    import observer_overhead

    before = torch.get_num_threads()
    assert observer_overhead.main(["--quick", "--threads", str(before + 1), "--cache-dir", str(tiny_cache)]) == 0
    assert torch.get_num_threads() == before
    r = _json_of(capsys)
    assert r["steps"] == 4 and r["null_s_per_step"] > 0 and r["db_s_per_step"] > 0
    assert 0 < r["recorder_share"] < 1
