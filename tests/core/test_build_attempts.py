"""Build attempts (StudentConfig.warmup_attempts): an attempt whose warm-up loss has not converged by its
limit is given up there, one that misses its build check is discarded, the next starts from fresh weights,
and the last fails loudly. Real tiny sciworld3 students, a few warm-up steps each."""

from __future__ import annotations

import json

import pytest
import torch

from opcod_core.build import (ATTEMPT_SEED_STRIDE, build_student, load_base, loss_curve, student_fingerprint,
                              student_seed, warmup_data, warmup_items)
from opcod_core.build_check import BuildCheckError
from opcod_core.config import RunConfig, preset
from opcod_core.data import load_dataset
from opcod_core.presets import WORLD3_ATTEMPTS, world3_pair
from opcod_core.trainer import data_spec
from opcod_core.warmup import ConvergeSchedule


def _run(schedule: ConvergeSchedule, drop_at: int) -> list[float]:
    rates = []
    for step in range(10_000):
        rate = schedule.lr_at(step)
        if rate is None:
            return rates
        rates.append(rate)
        schedule.observe(0.8 if step < drop_at else 0.02)
    raise AssertionError("the schedule never ended")


def test_a_schedule_that_may_give_up_ends_unconverged_at_its_limit_without_the_decay():
    given_up = ConvergeSchedule(3e-3, 400, 50, 0.15, give_up=True)
    assert _run(given_up, drop_at=10_000) == [3e-3] * 400
    assert given_up.gave_up and not given_up.converged and given_up.decay_start is None
    # a loss that converges in time decays as without the option
    kept, plain = ConvergeSchedule(3e-3, 400, 50, 0.15, give_up=True), ConvergeSchedule(3e-3, 400, 50, 0.15)
    assert _run(kept, drop_at=100) == _run(plain, drop_at=100)
    assert kept.converged and not kept.gave_up and kept.decay_start == plain.decay_start
    # without the option an unconverged loss still decays from the limit (the last attempt)
    last = ConvergeSchedule(3e-3, 400, 50, 0.15)
    assert len(_run(last, drop_at=10_000)) == 450 and not last.converged and last.decay_start == 400


def test_the_loss_curve_is_the_mean_of_each_window():
    assert loss_curve([1.0, 3.0, 2.0, 4.0, 5.0], window=2) == [2.0, 3.0, 5.0]
    assert loss_curve([]) == []


def _cfg(**student) -> RunConfig:
    return preset("sciworld3", {"data": {"max_items_per_domain": 40}, "students": [student, {}]})


def test_later_attempts_draw_fresh_weights_and_batches_but_know_the_same_units():
    cfg = _cfg()
    st = cfg.students[0]
    assert st.warmup_attempts == WORLD3_ATTEMPTS > 1
    assert student_seed(st, cfg, 0, attempt=2) == student_seed(st, cfg, 0) + 2 * ATTEMPT_SEED_STRIDE
    first, _ = load_base(st, 0, cfg, {}, attempt=0)
    second, _ = load_base(st, 0, cfg, {}, attempt=1)
    again, _ = load_base(st, 0, cfg, {}, attempt=1)
    pairs = list(zip(first.parameters(), second.parameters()))
    assert any(not torch.equal(a, b) for a, b in pairs)
    assert all(torch.equal(a, b) for a, b in zip(second.parameters(), again.parameters()))
    # the known units (the student's knowledge) are keyed by the build seed, not the attempt
    data = warmup_data(st, cfg, load_dataset(data_spec(cfg)))
    assert warmup_items(st, cfg, 0, data)[2] == warmup_items(st, cfg, 0, data)[2]


def test_unconverged_attempts_are_given_up_and_the_last_fails_loudly(tmp_path):
    """Three warm-up steps cannot bring the loss under 0.05: attempts 1 and 2 are given up at the limit,
    the third decays and misses its split; the error records every attempt and nothing is cached."""
    cfg = _cfg(warmup_sft_steps=3, warmup_decay_steps=2)
    with pytest.raises(BuildCheckError, match="student chem: the warm-up missed") as err:
        build_student(0, cfg, load_dataset(data_spec(cfg)), cache_dir=tmp_path)
    record = err.value.warmup
    assert record["attempt"] == WORLD3_ATTEMPTS - 1 and record["steps"] == 5 and "gave_up" not in record
    assert [(d["attempt"], d["steps"], d["gave_up"]) for d in record["discarded"]] == [(0, 3, True), (1, 3, True)]
    assert all(len(d["loss_curve"]) == 1 and "measured" not in d for d in record["discarded"])
    assert not any((tmp_path / "warm").rglob("config.json")) if (tmp_path / "warm").exists() else True


def test_an_attempt_that_misses_its_check_is_discarded_with_what_it_measured(tmp_path):
    """A converge loss no training loss is above ends each constant phase at once, so no attempt is given
    up; an interval of exactly 1.0 on chemistry is out of reach of two warm-up steps from random weights
    (a random tiny model answering every open numeric question right), so every attempt misses."""
    cfg = _cfg(warmup_converge_loss=1e9, warmup_decay_steps=1, warmup_attempts=2,
               warmup_expect={"chemistry": [1.0, 1.0]}, warmup_self_teacher_tolerance=None)
    with pytest.raises(BuildCheckError, match=r"chemistry: 0\.\d+ not in \[1, 1\]") as err:
        build_student(0, cfg, load_dataset(data_spec(cfg)), cache_dir=tmp_path)
    [first] = err.value.warmup["discarded"]
    assert first["attempt"] == 0 and "chemistry" in first["measured"] and first["measured"]["chemistry"] < 1.0
    assert err.value.warmup["attempt"] == 1


def test_a_build_that_passes_on_a_later_attempt_records_the_discarded_ones(tmp_path):
    cfg = _cfg(warmup_sft_steps=3, warmup_decay_steps=2, warmup_attempts=2, warmup_expect=None,
               warmup_self_teacher_tolerance=1.0)
    build_student(0, cfg, load_dataset(data_spec(cfg)), cache_dir=tmp_path)
    [check] = list((tmp_path / "warm").rglob("build_check.json"))
    warm = json.loads(check.read_text())["warmup"]
    assert warm["attempt"] == 1 and warm["steps"] == 5
    assert [(d["attempt"], d["gave_up"]) for d in warm["discarded"]] == [(0, True)]


def test_one_attempt_keeps_the_key_of_a_build_from_before_the_option():
    st = RunConfig.from_dict(world3_pair("chemistry", "physics")).students[0]
    assert student_fingerprint(st)["warmup_attempts"] == WORLD3_ATTEMPTS
    assert "warmup_attempts" not in student_fingerprint(st.model_copy(update={"warmup_attempts": 1}))


def test_the_students_report_states_each_builds_attempts(tmp_path):
    from opcod_core.bench.students_report import write_spread_report

    warm = {"attempt": 2, "steps": 3200, "decay_start": 1200, "final_loss": 0.004,
            "discarded": [{"attempt": 0, "steps": 4000, "gave_up": True, "final_loss": 0.071},
                          {"attempt": 1, "steps": 2900, "decay_start": 900, "measured": {"electricity": 0.52}}]}
    row = {"student": "elec", "build_seed": 0, "threads": 1, "passed": True, "measured": {"electricity": 0.99},
           "roles": {"electricity": "strong"}, "expect": {"electricity": [0.6, 1.0]}, "steps": 4000,
           "build_s": 60.0, "warmup": warm}
    text = write_spread_report([row], tmp_path / "students.md", "opcod bench students", "test machine").read_text()
    assert ("- elec s0 t1: attempt 3: 3200 steps, decay from step 1200, final loss 0.004; before it: attempt 1 "
            "given up unconverged at step 4000 (loss 0.071); attempt 2 missed (electricity 0.520), 60 s") in text
