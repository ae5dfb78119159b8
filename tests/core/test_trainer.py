"""The trainer end to end on the tiny preset: real tiny models, real data, no mocks."""

from __future__ import annotations

import json

import pytest
import torch

from opcod_core.controls import ControlBatch, ExchangeOverride, ReplayRequest, RunOverride, ScriptedControls
from opcod_core.observer import CollectingObserver
from opcod_core.trainer import Trainer

import tiny_support
from tiny_support import run

pytestmark = pytest.mark.slow


def small(**over):
    return tiny_support.small(rounds=2, steps=2, **over)


def test_tiny_run_exercises_every_path(tiny_run):
    obs, summary = tiny_run
    ex = obs.dicts("exchange")
    assert {e["round"] for e in ex} == {1, 2}
    assert {e["direction"] for e in ex} == {1, 2}
    assert {e["correct"] for e in ex} == {True, False}
    cats = {e["category"] for e in ex}
    assert "kept" in cats and cats & {"no_match", "no_concept_tag", "empty", "all_generic"}
    assert {"s+f", "s", "none"} <= {e["context_used"] for e in ex}
    decisions = {g["decision"] for g in obs.dicts("gate")}
    assert decisions == {"tutor", "silent"}
    # round 1's gate is computed and recorded before the fixture's overrides recompute it; the forced
    # decisions then hold for round 2's gate too (human run-level overrides persist across rounds)
    assert {(g["round"], g["source"]) for g in obs.dicts("gate")} == {(1, "auto"), (1, "human"), (2, "human")}
    for e in ex:
        assert len(e["tokens"]) == len(e["divergence"]) == len(e["token_ids"]) == len(e["divergence_s_only"])
        if e["skipped"]:
            assert e["loss"] == 0.0 and all(d == 0.0 for d in e["divergence"])
        if e["feedback_used"] is not None:
            assert e["category"] == "kept" and "<concept>" not in e["feedback_used"]
            assert e["feedback_used"] in e["teacher_context"]
        if e["s_index"] is not None:
            assert e["s_index"] != e["rollout_index"]
    evals = obs.dicts("eval")
    assert {e["round"] for e in evals} == {0, 1, 2}
    for name, s in summary["students"].items():
        assert set(s["initial"]) == {"chemistry", "physics"}
        assert isinstance(s["pareto_improved"], bool)
    steps = obs.dicts("step")
    assert len(steps) == 2 * 2 * 3
    assert all(torch.isfinite(torch.tensor(s["loss"])) for s in steps)


def test_every_event_is_typed_and_survives_its_json_line(tiny_run):
    """The events the sinks receive are the schema's models, and a line of events.jsonl reads back as the
    same event (the schema is the contract of both)."""
    from opcod_core.events import EVENT_TYPES, parse_event

    obs, _ = tiny_run
    assert {"run_start", "gate", "exchange", "step", "eval", "break", "checkpoint", "override", "finish"} <= {
        e.type for e in obs.events}
    for e in obs.events:
        assert type(e) is EVENT_TYPES[e.type]
        assert parse_event(json.loads(json.dumps(e.to_dict()))) == e


def test_only_the_tutee_changes(tmp_path, tiny_cache):
    cfg = small(schedule={"rounds": 1, "steps_per_direction": 1})
    tr = Trainer(cfg, tmp_path / "o", cache_dir=tiny_cache)
    tr.task_eval(0)
    tr.task_gate(1)
    tutee, tutor = tr.students["chem"], tr.students["phys"]
    before_tutor = {k: v.clone() for k, v in tutor.model.state_dict().items()}
    before_tutee = {k: v.clone() for k, v in tutee.model.state_dict().items()}
    tr.task_step(1, 1, 0)
    assert all(torch.equal(before_tutor[k], v) for k, v in tutor.model.state_dict().items())
    assert any(not torch.equal(before_tutee[k], v) for k, v in tutee.model.state_dict().items())


def _comparable(events):
    return [e for e in events if e["type"] in ("gate", "exchange", "step", "eval", "break")]


def _strip_times(e):
    if e["type"] == "step":
        return {**e, "metrics": {k: v for k, v in e["metrics"].items()
                                 if not k.startswith(("time/", "throughput/"))}}
    return e


def test_interrupted_run_resumes_exactly(tmp_path, tiny_cache):
    cfg = small()
    _, full_obs, full = run(cfg, tmp_path, tiny_cache, out="full")
    # pause in the middle of direction 1 of round 2 (global step 5 of 8), then resume
    pause = ScriptedControls({5: ControlBatch(action="pause")})
    _, obs1, res1 = run(cfg, tmp_path, tiny_cache, controls=pause, out="cut")
    assert res1.status == "paused"
    _, obs2, res2 = run(cfg, tmp_path, tiny_cache, resume=True, out="cut")
    assert res2.status == "finished"
    assert res2.summary == full.summary
    joined = [_strip_times(e) for e in _comparable(obs1.dicts() + obs2.dicts())]
    assert joined == [_strip_times(e) for e in _comparable(full_obs.dicts())]


def test_baselines_run_as_modes(tmp_path, tiny_cache):
    for algorithm in ("grpo", "one_way"):
        cfg = small(algorithm=algorithm, schedule={"rounds": 1, "steps_per_direction": 1},
                    students=[{"model": "tiny:llama"}, {"model": "tiny:llama"}])
        _, obs, res = run(cfg, tmp_path, tiny_cache, out=algorithm)
        assert res.status == "finished"
        ex = obs.dicts("exchange")
        assert ex and all(e["feedback_raw"] is None for e in ex)
        assert all(s["loss"] == s["loss"] for s in obs.dicts("step"))


def test_run_level_override_mutes_tutor_from_next_step(tmp_path, tiny_cache):
    cfg = small(schedule={"rounds": 1, "steps_per_direction": 2}, gating={"mode": "always"})
    ctl = ScriptedControls({1: ControlBatch(run_overrides=[RunOverride("ov1", "mute_tutor", student="phys")])})
    _, obs, _ = run(cfg, tmp_path, tiny_cache, controls=ctl)
    human_gates = [g for g in obs.dicts("gate") if g["source"] == "human"]
    assert human_gates and human_gates[0]["student"] == "phys" and human_gates[0]["decision"] == "silent"
    ex = obs.dicts("exchange")
    assert any(e["feedback_raw"] for e in ex if e["global_step"] == 0)
    assert all(e["feedback_raw"] is None for e in ex if e["global_step"] == 1)
    applied = [o for o in obs.dicts("override") if o["id"] == "ov1"]
    assert applied[0]["applied_at_step"] == 1


def test_edited_feedback_becomes_a_human_exchange_at_the_next_step(tmp_path, tiny_cache):
    cfg = small(schedule={"rounds": 1, "steps_per_direction": 2})
    first = CollectingObserver()
    tr = Trainer(cfg, tmp_path / "a", observer=first, cache_dir=tiny_cache)
    tr.task_eval(0)
    tr.task_gate(1)
    tr.task_step(1, 1, 0)
    target = first.dicts("exchange")[0]
    tr.controls = ScriptedControls({1: ControlBatch(exchange_overrides=[
        ExchangeOverride("e1", "edit", first.of_type("exchange")[0], text="Think about the element sodium.")])})
    tr._apply_controls(1, 1, 1)
    tr.task_step(1, 1, 1)
    human = [e for e in first.dicts("exchange") if e.get("feedback_source") == "human"]
    assert len(human) == 1
    h = human[0]
    assert h["origin_key"] == target["key"] and h["global_step"] == 1 and h["tutee"] == target["tutee"]
    assert "Think about the element sodium." in h["teacher_context"]
    assert len(h["divergence"]) == len(target["token_ids"]) and h["loss"] > 0


def test_manual_approval_asks_and_applies_decisions(tmp_path, tiny_cache):
    cfg = small(schedule={"rounds": 1, "steps_per_direction": 2}, gating={"mode": "always"},
                tutor={"approval": "manual"})
    ctl = ScriptedControls(approver=lambda req: ("reject", None))
    _, obs, _ = run(cfg, tmp_path, tiny_cache, controls=ctl)
    assert ctl.asked, "kept feedback must wait for a decision"
    rejected = [e for e in obs.dicts("exchange") if e["approval"] == "reject"]
    assert rejected and all(e["feedback_used"] is None for e in rejected)


def test_replay_recomputes_divergence_with_edited_feedback(tmp_path, tiny_cache):
    cfg = small(schedule={"rounds": 1, "steps_per_direction": 2}, gating={"mode": "always"})
    obs = CollectingObserver()
    tr = Trainer(cfg, tmp_path / "r", observer=obs, cache_dir=tiny_cache)
    tr.task_eval(0)
    tr.task_gate(1)
    tr.task_step(1, 1, 0)
    ex = obs.dicts("exchange")[0]
    tr.controls = ScriptedControls({1: ControlBatch(replays=[ReplayRequest("rp1", obs.of_type("exchange")[0],
                                                                           feedback="Consider the periodic table.")])})
    tr._apply_controls(1, 1, 1)
    rep = obs.dicts("replay")[0]
    assert rep["status"] == "done", rep
    res = rep["result"]
    assert len(res["before"]["divergence"]) == len(res["after"]["divergence"]) == len(ex["token_ids"])
    dist = res["after"]["answer_distribution"]
    assert set(dist) == set(ex["labels"]) and abs(sum(dist.values()) - 1) < 1e-5
    assert res["after"]["feedback"] == "Consider the periodic table."


def test_cli_train_writes_the_headless_contract(tmp_path, tiny_cache):
    from opcod_core.cli import main

    out = tmp_path / "cli"
    rc = main(["train", "--preset", "tiny", "--out", str(out), "--cache-dir", str(tiny_cache), "--quiet",
               "--set", "schedule.steps_per_direction=1"])
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["students"]) == {"chem", "phys"}
    types = {json.loads(line)["type"] for line in (out / "events.jsonl").read_text().splitlines()}
    assert {"gate", "exchange", "step", "eval", "checkpoint", "finish"} <= types
    # the drift report reads the same directory: one row per (round, direction) block, evals per round
    report = tmp_path / "drift.md"
    assert main(["bench", "drift", f"tiny={out}", "--out", str(report), "--block", "5"]) == 0
    text = report.read_text()
    assert "## tiny" in text and "| round | chem on chemistry | chem on physics |" in text
    rows = [ln for ln in text.splitlines() if ln.startswith("| 1 | 1 | chem | 0-") or ln.startswith("| 2 | 2 | phys | 0-")]
    assert len(rows) == 2
    # and one row per (round, direction, question domain) in the per-domain table
    per_domain = [ln for ln in text.splitlines() if ln.startswith(("| 1 | 1 | chem | chemistry |", "| 2 | 2 | phys | physics |"))]
    assert len(per_domain) == 2
    data = json.loads(report.with_suffix(".json").read_text())
    assert sorted(data[0]["evals"]) == ["0", "1", "2"] and len(data[0]["steps"]) == 4
    assert "divergence jsd (beta 0.5), KL anchor 0.0" in text
    # the div column: the mean per-token divergence of the direction's rollouts on that domain, from the events
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    divs = [sum(e["divergence"]) / len(e["divergence"]) for e in events if e["type"] == "exchange"
            and (e["round"], e["direction"], e["domain"]) == (1, 1, "chemistry") and e["divergence"]]
    cells = per_domain[0].split(" | ") if per_domain[0].startswith("| 1 | 1 |") else per_domain[1].split(" | ")
    assert cells[7] == f"{sum(divs) / len(divs):.4f}"
    assert main(["bench", "drift", f"x={tmp_path / 'nowhere'}", "--out", str(report)]) == 2
    # with the knowledge split of the students the run started from, measured before the tables
    assert main(["bench", "drift", f"tiny={out}", "--out", str(report), "--knowledge-split", "1",
                 "--cache-dir", str(tiny_cache)]) == 0
    text, data = report.read_text(), json.loads(report.with_suffix(".json").read_text())
    assert text.index("## Knowledge split before training") < text.index("## tiny")
    assert data["runs"][0]["label"] == "tiny" and data["world"]["k"] == 1
    for name, strong in (("chem", "chemistry"), ("phys", "physics")):
        for dom in ("chemistry", "physics"):
            w = data["world"]["world"][name][dom]
            assert 0 <= w["plain"] <= 1 and 0 <= w["peer_hint"] <= 1 and w["n_items"] > 0
            assert (f"| {name} ({strong}) | {dom} | {w['plain']:.3f} | {w['with_s']:.3f} | {w['reference_hint']:.3f} | "
                    f"{w['with_s_f']:.3f} | {w['peer_hint']:.3f} |") in text
    assert main(["train", "--preset", "tiny", "--out", str(out), "--quiet", "--set", "rollout.n=0"]) == 2


def test_checkpoint_retention_keeps_resume_fork_and_replay_working(tmp_path, tiny_cache):
    """Disk retention: optimizer state only in the newest checkpoint; a student unchanged since the previous
    checkpoint (the tutor of a direction) is hard-linked, not written again; an older checkpoint still
    restores (weights, the schedule's step) for a fork or a replay."""
    from opcod_core import checkpoint as ck
    from opcod_core.student_storage import STUDENT_META

    cfg = small(checkpoint_every=1, keep_checkpoints=3)
    trainer, _obs, res = run(cfg, tmp_path, tiny_cache, out="kept")
    assert res.status == "finished"
    root = ck.checkpoint_root(tmp_path / "kept")
    dirs = sorted((d for d in root.iterdir() if not d.name.startswith(".") and d.is_dir()),
                  key=lambda d: json.loads((d / "state.json").read_text())["next_task"])
    newest = ck.latest_checkpoint(tmp_path / "kept")
    assert newest == dirs[-1]
    assert {p.parent.name for p in newest.glob("*/optimizer.pt")} == {"chem", "phys"}
    assert not [p for d in dirs[:-1] for p in d.glob("*/optimizer.pt")]   # only the newest keeps it
    linked = [d for d in dirs if any(f.stat().st_nlink > 1 for f in d.glob("*/model/*.safetensors"))]
    assert linked, "no unchanged student was hard-linked"
    # an older checkpoint restores: weights and the schedule's step come back, with a fresh optimizer
    older = dirs[-2]
    meta = {name: json.loads((older / name / STUDENT_META).read_text())["updates"] for name in ("chem", "phys")}
    for name, rt in trainer.students.items():
        rt.load(older / name)
        assert rt.updates == meta[name]
