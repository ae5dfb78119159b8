"""Seed data for the API tests: real ORM rows through the real models (no mocks of our code).

Imported by the ``test_api_*`` modules (they put this directory on ``sys.path``)."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path
from dataclasses import dataclass, field

from app.db import session_scope
from app.models import (
    Checkpoint,
    EvalResult,
    Event,
    Exchange,
    Feedback,
    GateRecord,
    Metric,
    Prompt,
    Rollout,
    Run,
    Step,
    Student,
)
from app.services.runs import total_tasks
from opcod_core.config import preset

CATEGORIES = ("kept", "no_match", "empty")
FINISH = ("eos", "stop", "length", None)  # None: an exchange stored before finish reasons were recorded


def finish_of(i: int) -> str | None:
    """The finish reason seeded on the i-th exchange (insertion order)."""
    return FINISH[i % len(FINISH)]


@dataclass
class Seeded:
    run_id: int
    exchange_ids: list[int] = field(default_factory=list)  # in insertion (id) order
    step_ids: list[int] = field(default_factory=list)
    checkpoint_id: int | None = None


def seed_run(db, status: str = "running", n_steps: int = 4, per_step: int = 6, gates: bool = True,
             events: int = 0) -> Seeded:
    """A run with ``n_steps`` steps of ``per_step`` exchanges that vary every filterable attribute."""
    cfg = preset("tiny")
    with session_scope(db) as s:
        run = Run(name="seeded", preset="tiny", config=cfg.to_dict(), status=status,
                  total_tasks=total_tasks(cfg), next_task=n_steps, progress={"round": 1, "direction": 1,
                                                                           "step": n_steps, "global_step": n_steps})
        run.students = [Student(position=0, name="chem", model_ref="tiny:llama", strong_domain="chemistry"),
                        Student(position=1, name="phys", model_ref="tiny:qwen2", strong_domain="physics")]
        s.add(run)
        s.flush()
        out = Seeded(run.id)
        if gates:
            for rnd in (1, 2):
                for student, delta in (("chem", 0.1), ("phys", 0.5)):
                    s.add(GateRecord(run_id=run.id, round=rnd, student=student, scores={"chemistry": 0.5, "physics": 0.4},
                                     best={"chemistry": 0.5, "physics": 0.5}, delta=delta, tau=0.2, mode="cognizance",
                                     decision="tutor" if delta <= 0.2 else "silent", reason="", split="validation", k=2))
            for rnd in (0, 1):
                for student in ("chem", "phys"):
                    for domain in ("chemistry", "physics"):
                        s.add(EvalResult(run_id=run.id, round=rnd, student=student, domain=domain, split="test",
                                         k=2, accuracy=0.25 + 0.1 * rnd, n_items=16))
        prompts = {}
        for domain in ("chemistry", "physics"):
            p = Prompt(run_id=run.id, item_key=f"{domain}-1", domain=domain, split="train",
                       question=f"A {domain} question about entropy?", choices=["one", "two", "three", "four"],
                       labels=["A", "B", "C", "D"], gold="B")
            s.add(p)
            prompts[domain] = p
        s.flush()
        counter = itertools.count()
        for g in range(n_steps):
            rnd, direction = 1 + g // 2, 1 + g % 2
            tutee, tutor = ("chem", "phys") if direction == 1 else ("phys", "chem")
            st = Step(run_id=run.id, round=rnd, direction=direction, step=g % 2, global_step=g, tutee=tutee,
                      tutor=tutor, loss=0.1 * g, metrics={"loss/jsd": 0.1 * g, "time/step": 1.0})
            s.add(st)
            s.flush()
            out.step_ids.append(st.id)
            for key in ("loss/jsd", "gate/delta"):
                s.add(Metric(run_id=run.id, global_step=g, key=key, value=0.5 * g))
            for k in range(per_step):
                i = next(counter)
                domain = ("chemistry", "physics")[i % 2]
                correct = i % 3 == 0
                category = CATEGORIES[i % 3]
                ro = Rollout(run_id=run.id, step_id=st.id, student=tutee, prompt_id=prompts[domain].id,
                             prompt_index=k // 2, rollout_index=k % 2, text=f"reasoning {i}. Answer: B",
                             token_ids=[1, 2, 3, i], answer="B", correct=correct)
                s.add(ro)
                s.flush()
                fb = Feedback(rollout_id=ro.id, tutor=tutor, raw=f"<concept>entropy</concept> hint {i}",
                              concept="entropy", category=category, sanitised=f"hint {i}",
                              used_text=f"hint {i}" if category == "kept" else None)
                s.add(fb)
                s.flush()
                ex = Exchange(run_id=run.id, key=f"g{g}-p{k // 2}-r{k % 2}", step_id=st.id, rollout_id=ro.id,
                              feedback_id=fb.id, round=rnd, direction=direction, global_step=g, tutee=tutee,
                              tutor=tutor, domain=domain, correct=correct, category=category,
                              human_edited=(i % 5 == 4), context_used="s+f", finish_reason=finish_of(i),
                              s_index=0, s_text="a sibling",
                              teacher_context="teacher ctx", tokens=["a", "b", "c", "d"],
                              student_logprob=[-0.5, -1.0, -0.25, -2.0], divergence=[0.5, 0.25, 0.125, 1.0],
                              divergence_s_only=[0.25, 0.25, 0.25, 0.5], loss=0.25)
                s.add(ex)
                s.flush()
                out.exchange_ids.append(ex.id)
        ck = Checkpoint(run_id=run.id, tag="step-000004", path=f"/tmp/opcod-test/run-{run.id}/checkpoints/step-000004",
                        next_task=n_steps, round=1)
        s.add(ck)
        s.flush()
        out.checkpoint_id = ck.id
        for i in range(events):
            s.add(Event(run_id=run.id, type=("gate", "exchange", "step")[i % 3], ref_id=i + 1, payload={"n": i}))
    return out


def set_status(db, run_id: int, status: str, **values) -> None:
    with session_scope(db) as s:
        run = s.get(Run, run_id)
        run.status = status
        for k, v in values.items():
            setattr(run, k, v)


def open_api(db_url: str, tmp_path, token: str | None = None, max_body_bytes: int = 1 << 20):
    """A ``TestClient`` on ``create_app`` over ``db_url`` (already migrated) and its session factory."""
    from fastapi.testclient import TestClient

    from app.main import create_app
    from app.settings import Settings

    settings = Settings(data_dir=tmp_path / "data", database_url=db_url, api_token=token,
                        max_body_bytes=max_body_bytes)
    app = create_app(settings, sse_poll_s=0.01)
    return TestClient(app), app.state.db


def parse_sse(lines) -> list[dict]:
    """SSE lines -> [{"event", "id", "data"}], one per blank-line-terminated block (comments skipped)."""
    events, cur = [], {}
    for line in lines:
        if line == "":
            if cur:
                events.append(cur)
                cur = {}
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        cur[name] = value[1:] if value.startswith(" ") else value
        if name == "data" and events is not None:
            pass
    if cur:
        events.append(cur)
    return events


# --- `opcod serve` as a subprocess ---------------------------------------------------------------------

def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """``opcod serve`` in a subprocess: its base URL, its log, and a clean stop."""

    def __init__(self, data_dir, args=(), env=None, port=None):
        import os
        import subprocess

        self.port = port or free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(data_dir) / "serve.log"
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("OPCOD_")}
        full_env.update({"OPCOD_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1", **(env or {})})
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([sys.executable, "-m", "opcod_core.cli", "serve", "--port", str(self.port), *args],
                                     stdout=self._log, stderr=subprocess.STDOUT, env=full_env, cwd=str(data_dir))

    def log(self, tail: int = 6000) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-tail:]

    def wait_healthy(self, deadline_s: float = 60.0) -> None:
        import time

        import httpx

        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise AssertionError(f"opcod serve exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.base + "/healthz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)  # poll interval, bounded by the deadline
        raise AssertionError(f"opcod serve not healthy within {deadline_s} s:\n{self.log()}")

    def stop(self, sig=None, timeout_s: float = 180.0) -> int:
        import signal
        import subprocess

        if self.proc.poll() is None:
            self.proc.send_signal(sig or signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


def wait_for(predicate, deadline_s: float, what: str, interval_s: float = 0.2):
    """Poll ``predicate()`` until it returns something truthy, or fail after ``deadline_s``."""
    import time

    end = time.monotonic() + deadline_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {deadline_s} s waiting for {what}")
        time.sleep(interval_s)
