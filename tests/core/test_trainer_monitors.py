"""Baselines and monitors that say what they are, on the tiny preset (real tiny models, no mocks):
the break rate's baseline in context mode f, exchanges that show only the s their teacher saw, the live
gating mode reaching the approval queue, common random numbers for evaluation, the gate's standard
errors and the tutor-first direction order.

Paths are made certain by construction, not by the tiny models' samples: the tutor's prefill names a
concept ("w") that starts a word of every built-in question (which/what/...), so every feedback is
``kept`` whatever the tutor then writes, and τ = 10 (a gap is at most the number of domains, 2) keeps
every student cognizant, so switching to ``manual`` (which decides like ``cognizance``) keeps both tutors.
"""

from __future__ import annotations


import pytest

from opcod_core.controls import ControlBatch, RunOverride, ScriptedControls
from opcod_core.observer import CollectingObserver
from opcod_core.prompts import SOLUTION_HEADER
from opcod_core.trainer import Trainer

import tiny_support
from tiny_support import run

pytestmark = pytest.mark.slow

ALWAYS_KEPT = {"prefill": "<concept>w</concept>"}


def small(**over):
    return tiny_support.small(rounds=1, steps=2, **over)


def test_context_mode_f_shows_no_s_and_breaks_against_the_bare_question(tmp_path, tiny_cache):
    cfg = small(context_mode="f", gating={"mode": "always"}, tutor=ALWAYS_KEPT, break_rate={"samples_per_step": 6})
    _, obs, res = run(cfg, tmp_path, tiny_cache)
    assert res.status == "finished"
    ex = obs.dicts("exchange")
    assert ex and all(e["category"] == "kept" for e in ex)
    # the teacher never sees s in mode f, so no exchange shows one
    assert all(e["s_index"] is None and e["s_text"] is None for e in ex)
    assert {e["context_used"] for e in ex} == {"f"}
    assert all(SOLUTION_HEADER not in e["teacher_context"] for e in ex)
    breaks = obs.dicts("break")
    for st in obs.dicts("step"):
        g = st["global_step"]
        pool = [e for e in ex if e["global_step"] == g and e["correct"]]   # correct rollouts with kept f
        mine = [b for b in breaks if b["global_step"] == g]
        assert len(mine) == min(6, len(pool))
        m = st["metrics"]
        if not mine:
            assert not any(k.startswith("break/") for k in m)
            continue
        eligible = sum(b["correct_without_f"] for b in mine)
        broken = sum(b["broken"] for b in mine)
        assert (m["break/samples"], m["break/eligible"], m["break/broken"]) == (len(mine), eligible, broken)
        if eligible:
            assert m["break/rate"] == pytest.approx(broken / eligible)
        else:
            assert "break/rate" not in m   # undefined, not 0
    assert breaks, "the tiny students answer some prompts right in 4 steps x 16 rollouts"
    for b in breaks:
        # without f, the mode-f teacher sees only the question (baseline "none" = the student context)
        assert b["context"] == "f" and b["baseline"] == "none"
        assert b["eligible"] == b["correct_without_f"]
        assert b["broken"] == (b["correct_without_f"] and not b["correct_with_f"])


def test_context_mode_s_plus_f_breaks_against_s_alone(tmp_path, tiny_cache):
    cfg = small(schedule={"rounds": 1, "steps_per_direction": 1}, gating={"mode": "always"}, tutor=ALWAYS_KEPT,
                break_rate={"samples_per_step": 8})
    _, obs, _ = run(cfg, tmp_path, tiny_cache)
    ex = {e["key"]: e for e in obs.dicts("exchange")}
    for e in ex.values():   # an exchange shows s exactly when its teacher saw it
        assert (e["s_text"] is not None) == (e["context_used"] in ("s+f", "s"))
        if e["s_text"] is not None:
            assert SOLUTION_HEADER in e["teacher_context"]
    for b in obs.dicts("break"):
        assert b["baseline"] == ("s" if ex[b["exchange_key"]]["context_used"] == "s+f" else "none")
        assert b["context"] == ex[b["exchange_key"]]["context_used"]


@pytest.mark.parametrize("start, switch, asked_steps", [("always", "manual", {1, 2, 3}), ("manual", "always", {0})])
def test_set_mode_override_to_and_from_manual_reaches_the_approval_queue(tmp_path, tiny_cache, start, switch,
                                                                          asked_steps):
    cfg = small(gating={"mode": start, "tau": 10.0}, tutor=ALWAYS_KEPT)
    ctl = ScriptedControls({1: ControlBatch(run_overrides=[RunOverride("m1", "set_mode", value=switch)])},
                           approver=lambda req: ("approve", None))
    _, obs, _ = run(cfg, tmp_path, tiny_cache, controls=ctl)
    assert {req.exchange.global_step for req in ctl.asked} == asked_steps
    for e in obs.dicts("exchange"):
        assert e["category"] == "kept"
        assert e["approval"] == ("approve" if e["global_step"] in asked_steps else None)
    assert [g["mode"] for g in obs.dicts("gate") if g.get("note") == "override"] == [switch, switch]


def test_evaluations_use_common_random_numbers(tmp_path, tiny_cache):
    obs = CollectingObserver()
    tr = Trainer(small(), tmp_path / "crn", observer=obs, cache_dir=tiny_cache)
    tr.task_eval(0)
    tr.task_eval(1)   # no training in between: same weights, same seed, same samples
    assert tr.evals["0"] == tr.evals["1"]
    tr.task_gate(1)
    first = (tr.round_scores, tr.round_uncertainty)
    tr.task_gate(2)
    assert (tr.round_scores, tr.round_uncertainty) == first
    gates = obs.dicts("gate")
    n_val = len(tr.eval_items("chemistry", "validation"))
    for g in gates:
        assert g["n_items"] == {"chemistry": n_val, "physics": n_val}
        assert g["delta_se"] is not None and g["delta_se"] >= 0
        assert set(g["score_se"]) == {"chemistry", "physics"}
    assert [g["delta_se"] for g in gates if g["round"] == 1] == [g["delta_se"] for g in gates if g["round"] == 2]


def test_tutor_first_runs_the_direction_of_the_only_tutor_first_and_resumes_exactly(tmp_path, tiny_cache):
    # domain_selective with phys's strong domain unknown: chem tutors, phys is silent, by construction.
    # phys is direction 1's tutor, so with tutor_first direction 2 (phys tutee, chem tutor) runs first.
    over = {"gating": {"mode": "domain_selective"}, "students": [{}, {"strong_domain": None}]}
    _, fixed, _ = run(small(**over), tmp_path, tiny_cache, out="fixed")
    assert [(s["global_step"], s["direction"]) for s in fixed.dicts("step")] == [(0, 1), (1, 1), (2, 2), (3, 2)]
    cfg = small(**over, schedule={"rounds": 1, "steps_per_direction": 2, "tutor_first": True})
    _, full, res = run(cfg, tmp_path, tiny_cache, out="full")
    steps = full.dicts("step")
    assert [(s["global_step"], s["direction"], s["tutor"]) for s in steps] == [
        (0, 2, "chem"), (1, 2, "chem"), (2, 1, "phys"), (3, 1, "phys")]
    assert {g["student"]: g["decision"] for g in full.dicts("gate")} == {"chem": "tutor", "phys": "silent"}
    assert all(e["key"].startswith("r1-d2-") for e in full.dicts("exchange") if e["global_step"] < 2)
    # paused after the first step, resumed: the order comes back from the checkpoint
    pause = ScriptedControls({1: ControlBatch(action="pause")})
    _, cut1, r1 = run(cfg, tmp_path, tiny_cache, controls=pause, out="cut")
    _, cut2, r2 = run(cfg, tmp_path, tiny_cache, resume=True, out="cut")
    assert (r1.status, r2.status) == ("paused", "finished") and r2.summary == res.summary

    def comparable(events):
        return [{**e, "metrics": {k: v for k, v in e["metrics"].items() if not k.startswith(("time/", "throughput/"))}}
                if e["type"] == "step" else e for e in events if e["type"] in ("gate", "exchange", "step", "eval", "break")]
    assert comparable(cut1.dicts() + cut2.dicts()) == comparable(full.dicts())
