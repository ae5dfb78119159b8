"""The N-peer configuration (opcod_core.peer_config): 2 to 8 students and domains, the routing and trust
sections, and that configs that do not use them keep their JSON and their cache keys."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from opcod_core.config import RunConfig, format_validation_error, preset, preset_names
from opcod_core.tasks import global_step, task_list, total_steps


def students(n: int) -> list[dict]:
    return [{"name": f"s{i}", "model": "tiny:llama"} for i in range(n)]


def errors(overrides: dict, name: str = "tiny") -> list[str]:
    with pytest.raises(ValidationError) as err:
        preset(name, overrides)
    return format_validation_error(err.value)


@pytest.mark.parametrize("n", [2, 3, 8])
def test_two_to_eight_students(n):
    cfg = preset("tiny", {"students": students(n)})
    assert [s.name for s in cfg.students] == [f"s{i}" for i in range(n)]
    assert RunConfig.from_json(cfg.to_json()) == cfg


@pytest.mark.parametrize("n", [1, 9])
def test_too_few_or_too_many_students_name_the_field(n):
    lines = errors({"students": students(n)})
    assert lines and all(line.startswith("students") for line in lines), lines


def test_student_names_must_differ_and_the_error_names_the_field():
    lines = errors({"students": [*students(2), {"name": "s1", "model": "tiny:llama"}]})
    assert any(line.startswith("students:") and "different names" in line and "'s1'" in line for line in lines)


def test_two_to_eight_domains_all_different():
    cfg = preset("tiny", {"data": {"domains": ["chemistry", "physics", "biology"]}})
    assert cfg.data.domains == ("chemistry", "physics", "biology")
    assert any(line.startswith("data.domains") for line in errors({"data": {"domains": ["chemistry"]}}))
    assert any(line.startswith("data.domains") and "different" in line
               for line in errors({"data": {"domains": ["chemistry", "physics", "chemistry"]}}))
    assert any(line.startswith("data.domains") for line in errors({"data": {"domains": [f"d{i}" for i in range(9)]}}))


def test_every_existing_check_holds_for_more_students():
    assert any("not one of" in line for line in errors(
        {"students": [*students(2), {"name": "bio", "model": "tiny:llama", "strong_domain": "biology"}]}))
    assert any("algorithm: 'one_way'" in line and "exactly 2 students" in line
               for line in errors({"students": students(3), "algorithm": "one_way"}))
    assert any("every student" in line for line in errors(
        {"students": [{"name": "a", "strong_domain": "chemistry"}, {"name": "b", "strong_domain": None}],
         "algorithm": "one_way", "one_way_domains": "strong"}))


def test_vllm_engines_sharing_one_gpu_must_fit():
    gpu = {"backend": "vllm", "device": "cuda"}
    assert preset("tiny", {**gpu, "students": students(3)}).vllm.gpu_memory_utilization == 0.3   # 0.9: fits
    assert any("vllm.gpu_memory_utilization" in line for line in errors({**gpu, "students": students(4)}))
    preset("tiny", {**gpu, "students": students(4), "vllm": {"kv_cache_gib": 4}})        # sized in GiB: fine
    preset("tiny", {**gpu, "students": students(4), "executor": "ray"})                  # one GPU set each


def test_routing_and_trust_sections_are_validated():
    cfg = preset("tiny", {"routing": {"mode": "all", "max_tutors": 2},
                          "trust": {"auto_quarantine": True, "threshold": 0.4, "z": 2.58}})
    assert (cfg.routing.mode, cfg.routing.max_tutors) == ("all", 2)
    assert (cfg.trust.auto_quarantine, cfg.trust.threshold, cfg.trust.z) == (True, 0.4, 2.58)
    assert any(line.startswith("routing.mode") for line in errors({"routing": {"mode": "loudest"}}))
    assert any(line.startswith("routing.max_tutors") for line in errors({"routing": {"mode": "all", "max_tutors": 0}}))
    assert any(line.startswith("routing") and "max_tutors" in line for line in errors({"routing": {"max_tutors": 2}}))
    assert any(line.startswith("trust.threshold") for line in errors({"trust": {"threshold": 1.5}}))
    assert any(line.startswith("trust.z") for line in errors({"trust": {"z": 0}}))
    assert any(line.startswith("trust.recent") for line in errors({"trust": {"recent": 0}}))
    assert cfg.trust.recent is None and preset("tiny", {"trust": {"recent": 20}}).trust.recent == 20
    d = cfg.to_dict()
    assert d["routing"] == {"mode": "all", "max_tutors": 2} and d["trust"]["threshold"] == 0.4
    assert RunConfig.from_dict(d) == cfg and RunConfig.from_yaml(cfg.to_yaml()) == cfg


def test_defaults_leave_existing_configs_their_json():
    for name in preset_names():
        cfg = preset(name)
        d = cfg.to_dict()
        assert "routing" not in d and "trust" not in d
        assert RunConfig.from_dict(d) == cfg
        assert cfg.routing.mode == "best" and not cfg.trust.auto_quarantine
    # a stored config written before the sections existed reads back unchanged
    old = preset("tiny").to_dict()
    assert RunConfig.from_dict(old).to_dict() == old


def test_new_sections_never_enter_the_warm_up_key():
    from opcod_core.build import warmup_key

    for name in ("tiny", "tiny-trio", "sciworld", "sciworld3", "sciworld3-trio"):
        cfg = preset(name)
        changed = cfg.replace({"routing": {"mode": "round_robin"}, "trust": {"auto_quarantine": True}})
        for i, st in enumerate(cfg.students):
            assert warmup_key(st, cfg, i) == warmup_key(changed.students[i], changed, i)


def test_task_numbering_generalises_and_keeps_two_peers():
    assert [t for t in task_list(1, 2, 3) if t.kind == "step"] == [
        ("step", 1, slot, k) for slot in (1, 2, 3) for k in (0, 1)]
    assert task_list(2, 3) == task_list(2, 3, 2)
    # global steps are the steps' positions in the task list, for any number of peers
    for peers in (2, 3, 5):
        steps = [t for t in task_list(3, 2, peers) if t.kind == "step"]
        assert [global_step(t.round, t.slot, t.k, 2, peers) for t in steps] == list(range(len(steps)))
        assert len(steps) == total_steps(3, 2, peers)
    assert global_step(2, 2, 1, 50) == 50 * 2 + 50 + 1     # the two-peer formula (r-1)·2K + (slot-1)·K + k


@pytest.mark.parametrize("tutor_first, expect", [(False, [1, 2, 3]), (True, [1, 3, 2])])
def test_direction_order_of_three_peers(tutor_first, expect):
    from types import SimpleNamespace

    from opcod_core.trainer import Trainer

    # only phys may tutor: chem and bio have a tutor this round, phys has none
    names = ["chem", "phys", "bio"]
    stub = SimpleNamespace(config=SimpleNamespace(schedule=SimpleNamespace(tutor_first=tutor_first)), names=names,
                           gates={"chem": {"decision": "silent"}, "phys": {"decision": "tutor"},
                                  "bio": {"decision": "silent"}}, orders={})
    assert Trainer._direction_order(stub) == expect
    assert [Trainer.direction_of(stub, 1, slot) for slot in (1, 2, 3)] == [1, 2, 3]   # before any order is set
