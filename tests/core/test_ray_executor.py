"""The Ray executor on a local Ray (num_cpus=2): a tiny run with each student in an actor gives the
local executor's summary for the same seed, and a killed actor fails the run clearly and the run
resumes from its last checkpoint to the same result."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

ray = pytest.importorskip("ray") if os.environ.get("OPCOD_REQUIRE_RAY") != "1" else __import__("ray")

from opcod_core.config import preset
from opcod_core.observer import CollectingObserver
from opcod_core.trainer import Trainer

pytestmark = [pytest.mark.ray, pytest.mark.slow]

RAY = {"executor": "ray", "ray": {"local_num_cpus": 2, "num_cpus_per_student": 1}}


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _run(config, out, cache, observer=None, resume=False):
    trainer = Trainer(config, out, observer=observer or CollectingObserver(), cache_dir=cache)
    try:
        return trainer, trainer.run(resume=resume)
    finally:
        trainer.close()


@pytest.fixture(scope="module")
def local_summary(tmp_path_factory, tiny_cache):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # what each actor (1 CPU) uses, so float reductions match
    try:
        _, res = _run(preset("tiny"), tmp_path_factory.mktemp("local"), tiny_cache)
    finally:
        torch.set_num_threads(threads)
    return res.summary


def test_ray_run_matches_local(local_ray, local_summary, tmp_path, tiny_cache):
    obs = CollectingObserver()
    trainer, res = _run(preset("tiny", RAY), tmp_path, tiny_cache, obs)
    assert res.status == "finished"
    assert type(trainer.students["chem"]).__name__ == "RemoteStudent"
    assert res.summary == local_summary
    kinds = {e["type"] for e in obs.dicts()}
    assert {"gate", "exchange", "step", "eval", "checkpoint"} <= kinds


def test_lost_actor_fails_clearly_and_resumes(local_ray, local_summary, tmp_path, tiny_cache):
    from opcod_core.executors.ray import StudentActorLost

    trainer = Trainer(preset("tiny", RAY), tmp_path, observer=CollectingObserver(), cache_dir=tiny_cache)
    killed: list[str] = []
    emit = trainer.emit

    def emit_then_kill(event):  # kill the tutee's actor once the first step of round 2 is recorded
        emit(event)
        if event.type == "step" and event.round == 2 and not killed:
            killed.append(event.tutee)
            ray.kill(trainer.students[event.tutee].handle)

    trainer.emit = emit_then_kill
    with pytest.raises(StudentActorLost, match=r"student \w+: its Ray actor died"):
        trainer.run()
    trainer.close()
    assert killed
    _, res = _run(preset("tiny", RAY), tmp_path, tiny_cache, resume=True)
    assert res.status == "finished"
    assert res.summary == local_summary


def test_proxy_carries_the_students_chat_template_kwargs(local_ray):
    """Rendering is local to the proxy: it must use the same chat template variables as the actor."""
    from opcod_core.data.types import SplitDataset
    from opcod_core.executors.ray import ray_students

    cfg = preset("tiny", {**RAY, "students": [
        {"warmup_sft_steps": 0, "chat_template_kwargs": {"enable_thinking": False}}, {"warmup_sft_steps": 0}]})
    students = ray_students(cfg, SplitDataset(splits={}))
    try:
        assert students["chem"].chat_template_kwargs == {"enable_thinking": False}
        assert students["phys"].chat_template_kwargs == {}
        messages = [{"role": "user", "content": "What is the chemical symbol of iron?"}]
        for st in students.values():
            assert st.render(messages, prefill="<concept>") == st._call("render", messages, prefill="<concept>")
    finally:
        for st in students.values():
            st.close()


def test_a_run_leaves_no_ray_attached(tmp_path, tiny_cache):
    """A Ray the executor started for a run is shut down when the run's trainer closes (a long-lived worker
    never stays attached to a cluster between runs); a Ray the caller started is left to the caller."""
    from opcod_core.executors.ray import ensure_ray, release_ray

    if ray.is_initialized():
        ray.shutdown()
    cfg = preset("tiny", {**RAY, "schedule": {"rounds": 1, "steps_per_direction": 1}})
    trainer = Trainer(cfg, tmp_path, observer=CollectingObserver(), cache_dir=tiny_cache)
    assert ray.is_initialized()
    trainer.close()
    assert not ray.is_initialized()
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        ensure_ray(cfg)
        release_ray()
        assert ray.is_initialized()  # the caller's
    finally:
        ray.shutdown()
