"""THE SCENARIO (issue 3, "Done when"): through HTTP alone, against a real `opcod serve` with its
worker, as a script would: create a tiny run, follow it over SSE to the end, page its exchanges with
filters, read one exchange with its per-token arrays, post an exchange edit while the run is running
and see it applied with provenance at a later step, post a replay and read its result, and
pause/resume/cancel another run. Then the external acceptance script must pass against the same server.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest

import api_seed

ACCEPTANCE = Path("/work/shared/acceptance/api_scenario.py")
FINAL = ("finished", "failed", "cancelled")
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


class SSEFollower(threading.Thread):
    """Reads /runs/{id}/events until the `end` event, reconnecting with Last-Event-ID if cut."""

    def __init__(self, base: str, run_id: int, deadline_s: float):
        super().__init__(daemon=True)
        self.url = f"{base}/api/v1/runs/{run_id}/events"
        self.deadline_s = deadline_s
        self.events: list[dict] = []
        self.error: BaseException | None = None
        self.client = httpx.Client(timeout=httpx.Timeout(30.0, read=60.0))

    def run(self) -> None:
        import time

        end = time.monotonic() + self.deadline_s
        last = None
        try:
            while time.monotonic() < end:
                headers = {"Last-Event-ID": last} if last else {}
                with self.client.stream("GET", self.url, headers=headers) as r:
                    r.raise_for_status()
                    block: dict = {}
                    for line in r.iter_lines():
                        if line == "":
                            if block:
                                self.events.append(block)
                                last = block.get("id", last)
                                if block.get("event") == "end":
                                    return
                            block = {}
                        elif not line.startswith(":"):
                            name, _, value = line.partition(":")
                            block[name] = value[1:] if value.startswith(" ") else value
        except BaseException as exc:  # reported by the test
            self.error = exc
        finally:
            self.client.close()


@pytest.fixture(scope="session")
def warm_tiny_cache(tiny_cache):
    """The tiny students' warm-up, trained once in-process into the session's cache (a no-op when
    another test already did it): the server's worker then loads warmed weights instead of training."""
    from opcod_core.executors import build_students
    from opcod_core.config import preset
    from opcod_core.data import load_dataset
    from opcod_core.trainer import data_spec

    cfg = preset("tiny")
    build_students(cfg, load_dataset(data_spec(cfg)), tiny_cache)
    return tiny_cache


def test_the_rest_scenario(tmp_path, warm_tiny_cache):
    served = api_seed.Served(tmp_path / "data", args=["--workers", "1"],
                             env={"OPCOD_CACHE_DIR": str(warm_tiny_cache)})
    api = httpx.Client(base_url=served.base + "/api/v1", timeout=30)
    follower = None
    try:
        served.wait_healthy()

        def get(path, **params):
            r = api.get(path, params=params)
            assert r.status_code == 200, (path, r.status_code, r.text, served.log())
            return r.json()

        # --- a tiny run with enough steps to steer while it runs -----------------------------------
        r = api.post("/runs", json={"preset": "tiny", "name": "scenario",
                                    "overrides": {"schedule": {"rounds": 2, "steps_per_direction": 6}}})
        assert r.status_code == 201, r.text
        run = r.json()
        rid = run["id"]
        follower = SSEFollower(served.base, rid, deadline_s=900)
        follower.start()

        # --- an exchange edit, posted as soon as the first exchange exists --------------------------
        first = api_seed.wait_for(lambda: get(f"/runs/{rid}/exchanges", limit=1)["items"], 600,
                                  f"the first exchange of run {rid}\n{served.log()}", interval_s=0.25)[0]
        edit = api.post(f"/exchanges/{first['id']}/override",
                        json={"kind": "edit", "author": "scenario",
                              "text": "Think about which quantity is conserved in the question."})
        assert edit.status_code == 201, edit.text
        override = edit.json()
        assert get(f"/runs/{rid}")["status"] == "running", "the edit must be posted while the run is running"

        # --- follow the run over SSE to its end -----------------------------------------------------
        follower.join(timeout=900)
        assert not follower.is_alive(), f"SSE stream did not end\n{served.log()}"
        assert follower.error is None, f"SSE: {follower.error!r}\n{served.log()}"
        events = follower.events
        assert events[-1]["event"] == "end" and json.loads(events[-1]["data"])["status"] == "finished", \
            (events[-3:], served.log())
        ids = [int(e["id"]) for e in events if "id" in e]
        assert ids == sorted(set(ids)), "event ids strictly increasing, no duplicates"
        types = {e["event"] for e in events}
        assert {"exchange", "step"} <= types, types
        run = get(f"/runs/{rid}")
        assert run["status"] == "finished" and run["progress"]["fraction"] == 1.0, run
        assert run["gates"] and run["latest_metrics"]

        # --- page through the exchanges, unfiltered and filtered ------------------------------------
        def page_all(**params):
            out, cursor = [], None
            while True:
                q = {"limit": 7, **params, **({"cursor": cursor} if cursor else {})}
                body = get(f"/runs/{rid}/exchanges", **q)
                out += body["items"]
                cursor = body["next_cursor"]
                if not cursor:
                    return out

        everything = page_all()
        all_ids = [x["id"] for x in everything]
        assert all_ids == sorted(set(all_ids), reverse=True) and len(all_ids) > 7
        assert len(all_ids) == sum(1 for e in events if e["event"] == "exchange")
        for name, value in [("domain", "chemistry"), ("round", 2), ("direction", 2), ("correct", True),
                            ("category", "kept"), ("human_edited", True)]:
            param = str(value).lower() if isinstance(value, bool) else value
            got = page_all(**{name: param})
            assert [x["id"] for x in got] == [x["id"] for x in everything if x[name] == value], name

        # --- the edit was applied at a later step, with provenance ----------------------------------
        applied = get(f"/overrides/{override['id']}")
        assert applied["status"] == "applied", (applied, served.log())
        assert applied["applied_at"] and applied["applied_at_step"] > first["global_step"], applied
        human = [x for x in everything if x["human_edited"] and x["override_id"] == override["id"]]
        assert human, "no human-edited exchange made from the override"
        h = get(f"/exchanges/{human[0]['id']}")
        assert h["origin_exchange_id"] == first["id"] and h["global_step"] > first["global_step"]
        assert h["provenance"]["id"] == override["id"] and h["feedback"]["source"] == "human"
        assert "conserved" in (h["feedback"]["used_text"] or h["feedback"]["raw"] or "")
        assert human[0]["id"] in get(f"/exchanges/{first['id']}")["derived_exchange_ids"]

        # --- one exchange with everything -----------------------------------------------------------
        ex = get(f"/exchanges/{everything[-1]['id']}")
        n_tok = len(ex["tokens"])
        assert n_tok > 0 and len(ex["divergence"]) == n_tok and len(ex["student_logprob"]) == n_tok
        assert ex["prompt"]["question"] and ex["rollout"]["token_ids"] and ex["gate"] is not None

        # --- a replay, served by the idle worker from the finished run's checkpoint -----------------
        r = api.post(f"/exchanges/{ex['id']}/replay", json={"feedback_text": "Consider the units of each quantity."})
        assert r.status_code == 202, r.text
        rep = r.json()
        rep = api_seed.wait_for(lambda: (lambda x: x if x["status"] in ("done", "failed") else None)(
            get(f"/replays/{rep['id']}")), 300, f"replay {rep['id']}\n{served.log()}")
        assert rep["status"] == "done", rep
        assert len(rep["result"]["after"]["divergence"]) == n_tok and "before" in rep["result"]

        # --- export -----------------------------------------------------------------------------------
        lines = [json.loads(x) for x in api.get(f"/runs/{rid}/export", params={"format": "jsonl"}).text.splitlines()]
        assert sorted(x["id"] for x in lines) == sorted(all_ids)

        # --- pause / resume / cancel another run ------------------------------------------------------
        other = api.post("/runs", json={"preset": "tiny", "overrides": {"schedule": {"rounds": 1,
                                                                                     "steps_per_direction": 20}}}).json()
        oid = other["id"]
        status = lambda: get(f"/runs/{oid}")  # noqa: E731
        api_seed.wait_for(lambda: status()["status"] == "running", 300, f"run {oid} running\n{served.log()}")
        assert api.post(f"/runs/{oid}/pause").status_code == 200
        paused = api_seed.wait_for(lambda: (lambda x: x if x["status"] in ("paused",) + FINAL else None)(status()),
                                   300, f"run {oid} paused\n{served.log()}")
        assert paused["status"] == "paused" and paused["requested_action"] is None, paused
        assert api.post(f"/runs/{oid}/resume").json()["status"] == "queued"
        api_seed.wait_for(lambda: status()["status"] == "running", 300, f"run {oid} running again\n{served.log()}")
        assert api.post(f"/runs/{oid}/cancel").status_code == 200
        done = api_seed.wait_for(lambda: (lambda x: x if x["status"] in FINAL else None)(status()), 300,
                                 f"run {oid} cancelled\n{served.log()}")
        assert done["status"] == "cancelled", done

        # --- the external acceptance script against the same server ----------------------------------
        res = subprocess.run([sys.executable, str(ACCEPTANCE), served.base], capture_output=True, text=True,
                             timeout=1200)
        assert res.returncode == 0, f"{res.stdout}\n{res.stderr}\n{served.log()}"
        assert "api scenario ok" in res.stdout
    finally:
        api.close()
        rc = served.stop()
        if follower is not None:
            follower.join(timeout=10)
    assert rc == 0, served.log()
