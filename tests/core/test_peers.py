"""N peers end to end on tiny models (issue 17): two peers behave as before whatever the routing mode, three
specialists tutor each other with routed feedback, tutor trust quarantines and lifts, and a three-peer run
resumes exactly. Comparisons of floats are between runs in this process only."""

from __future__ import annotations

import json

import pytest

from opcod_core.config import deep_merge, preset
from opcod_core.controls import ControlBatch, RunOverride, ScriptedControls
from opcod_core.events import PEER_FIELDS, BreakEvent, parse_event
from opcod_core.gating import GateRecord, tutor_allowed
from opcod_core.trust_run import apply_trust_override, initial_trust, observe_step

import tiny_support
from tiny_support import run

pytestmark = pytest.mark.slow
POS = {"round": 1, "direction": 1, "step": 0, "global_step": 4, "tutee": "chem", "tutor": "phys"}


def _paths():
    """chem tutors from the start, phys is muted, then tutors from round 2 (tests/conftest.py path_controls)."""
    return ScriptedControls({
        0: ControlBatch(run_overrides=[RunOverride("c", "force_tutor", student="chem"),
                                       RunOverride("p", "mute_tutor", student="phys")]),
        4: ControlBatch(run_overrides=[RunOverride("p2", "force_tutor", student="phys")])})


def _trained(events):
    """What training produced (a paused-and-resumed run must equal the uninterrupted one on these)."""
    keep = ("gate", "exchange", "step", "eval", "break", "trust", "override")
    return [e for e in _comparable(events) if e["type"] in keep]


def _comparable(events, drop_config=False):
    out = []
    for e in events:
        if e["type"] == "step":
            e = {**e, "metrics": {k: v for k, v in e["metrics"].items() if not k.startswith(("time/", "throughput/"))}}
        if e["type"] in ("checkpoint", "resume") or (drop_config and e["type"] == "run_start"):
            continue
        if e["type"] == "finish" and e["summary"]:
            e = {**e, "summary": {k: v for k, v in e["summary"].items() if k != "trust"}}
        out.append(e)
    return out


# --- two peers: as before -------------------------------------------------------------------------------
def test_two_peers_are_the_same_run_in_every_routing_mode_and_with_trust_on(tmp_path, tiny_cache):
    """Three routing code paths and the trust tracker with a threshold no bound can exceed give one event
    stream, and it has the two-peer shape: no N-peer field anywhere, the other peer as every tutor, 2K
    steps per round in direction order, the config's JSON without the new sections."""
    streams = {}
    for label, over in (("best", {}), ("round_robin", {"routing": {"mode": "round_robin"}}),
                        ("all", {"routing": {"mode": "all"}}),
                        ("trust", {"trust": {"auto_quarantine": True, "threshold": 1.0}})):
        cfg = tiny_support.small(rounds=2, steps=2, rollout={"n": 6}, **over)
        _, obs, res = run(cfg, tmp_path, tiny_cache, controls=_paths(), out=label)
        assert res.status == "finished"
        streams[label] = obs.dicts()
    best = streams["best"]
    for label, events in streams.items():
        assert _comparable(events, drop_config=True) == _comparable(best, drop_config=True), label
    assert "routing" not in best[0]["config"] and "trust" not in best[0]["config"] and best[0]["steps"] == 8
    assert "trust" not in best[-1]["summary"] and "trust" in streams["trust"][-1]["summary"]
    other = {"chem": "phys", "phys": "chem"}
    assert not any(PEER_FIELDS & set(e) for e in best)
    assert all(e["tutor"] == other[e["tutee"]] for e in best if e["type"] in ("exchange", "step", "break"))
    assert [(s["global_step"], s["direction"]) for s in best if s["type"] == "step"] == [
        (0, 1), (1, 1), (2, 2), (3, 2), (4, 1), (5, 1), (6, 2), (7, 2)]
    assert any(e["feedback_used"] for e in best if e["type"] == "exchange")   # feedback flowed


# --- three peers ----------------------------------------------------------------------------------------
def three(rounds=2, steps=1, **over):
    """Three specialists of the built-in data's three domains (own build seeds: one cached warm-up each)."""
    students = [{"name": n, "model": m, "strong_domain": d, "warmup_sft_steps": 200, "warmup_domains": [d],
                 "build_seed": 70 + i}
                for i, (n, m, d) in enumerate((("chem", "tiny:llama", "chemistry"), ("phys", "tiny:qwen2", "physics"),
                                               ("bio", "tiny:llama", "biology")))]
    base = {"students": students, "data": {"domains": ["chemistry", "physics", "biology"]},
            "schedule": {"rounds": rounds, "steps_per_direction": steps}, "rollout": {"n": 6},
            "gating": {"mode": "always"}}
    return preset("tiny", deep_merge(base, over))


def _quarantined_by_step(events, n_steps, initial=()):
    """The quarantined tutors in force at each global step, replayed from the trust events."""
    held, by_step = set(initial), []
    changes = sorted((e["step"], i, e) for i, e in enumerate(events) if e["type"] == "trust")
    for g in range(n_steps):
        for step, _, e in changes:
            if step == g:
                (held.add if e["action"] == "quarantine" else held.discard)(e["tutor"])
        by_step.append(set(held))
    return by_step


def test_three_specialists_tutor_each_other_through_routed_feedback(tmp_path, tiny_cache):
    # bio is muted from round 2 on: its feedback must vanish from the routes from then
    mute = ScriptedControls({3: ControlBatch(run_overrides=[RunOverride("m", "mute_tutor", student="bio")])})
    _, obs, res = run(three(), tmp_path, tiny_cache, controls=mute)
    assert res.status == "finished"
    events = obs.dicts()
    for e in obs.events:
        assert parse_event(json.loads(json.dumps(e.to_dict()))) == e
    start = events[0]
    assert start["students"] == ["chem", "phys", "bio"] and start["steps"] == 6
    steps = [e for e in events if e["type"] == "step"]
    assert [(s["global_step"], s["direction"], s["tutee"]) for s in steps] == [
        (0, 1, "chem"), (1, 2, "phys"), (2, 3, "bio"), (3, 1, "chem"), (4, 2, "phys"), (5, 3, "bio")]
    gates = {}   # (round, student) -> the record in force (the last one of the round before the step)
    for e in events:
        if e["type"] == "gate":
            gates[(e["round"], e["student"])] = GateRecord(**{k: v for k, v in e.items() if k in GateRecord.model_fields})
        if e["type"] == "exchange":
            _check_route(e, {n: gates[(e["round"], n)] for n in start["students"]})
    ex = [e for e in events if e["type"] == "exchange"]
    assert {e["tutee"] for e in ex} == {"chem", "phys", "bio"} and len({e["tutor"] for e in ex}) >= 2
    assert all("bio" not in e["tutors"] for e in ex if e["round"] == 2)
    assert any(e["tutors"] for e in ex)
    for b in (e for e in events if e["type"] == "break"):
        owner = next(e for e in ex if e["key"] == b["exchange_key"])
        assert b["tutor"] in owner["tutors"] and b["tutor"] != b["tutee"]
    summary = res.summary
    assert set(summary["students"]) == {"chem", "phys", "bio"}
    assert all(set(s["initial"]) == {"chemistry", "physics", "biology"} for s in summary["students"].values())
    assert summary["trust"]["quarantined"] == {}


def _check_route(e, gates):
    """``best``: the tutor is the cognizant peer (not the tutee) with the highest score on the domain."""
    domain, tutee = e["domain"], e["tutee"]
    candidates = {n: g.scores[domain] for n, g in gates.items() if n != tutee and tutor_allowed(g, domain)}
    if not candidates:
        assert e["tutors"] == [] and e["feedback_raw"] is None
        return
    assert len(e["tutors"]) == 1 and e["tutor"] == e["tutors"][0] != tutee
    assert candidates[e["tutor"]] == max(candidates.values())
    assert e["feedbacks"][0]["tutor"] == e["tutor"] and e["feedback_raw"] == e["feedbacks"][0]["raw"]


def test_three_peers_resume_exactly_with_a_quarantine_in_force(tmp_path, tiny_cache):
    """A person quarantines phys at step 1 and lifts it at step 5; paused at step 3 and resumed, the run is the
    uninterrupted one (trust state in the checkpoint), and phys's feedback is used only outside [1, 5)."""
    cfg = three(rounds=2, steps=1, routing={"mode": "round_robin"}, break_rate={"samples_per_step": 4})

    def script(pause=False):
        s = {1: ControlBatch(run_overrides=[RunOverride("q", "quarantine", student="phys", value="reads badly")]),
             5: ControlBatch(run_overrides=[RunOverride("l", "lift", student="phys")])}
        if pause:
            s[3] = ControlBatch(action="pause")
        return ScriptedControls(s)

    _, full, res = run(cfg, tmp_path, tiny_cache, controls=script(), out="full")
    _, cut1, r1 = run(cfg, tmp_path, tiny_cache, controls=script(pause=True), out="cut")
    assert r1.status == "paused"
    _, cut2, r2 = run(cfg, tmp_path, tiny_cache, controls=script(), resume=True, out="cut")   # polled from step 3
    assert r2.status == "finished" and r2.summary == res.summary
    assert _trained(cut1.dicts() + cut2.dicts()) == _trained(full.dicts())
    events = full.dicts()
    trust = [(e["tutor"], e["action"], e["source"], e["step"], e["override_id"]) for e in events if e["type"] == "trust"]
    assert trust == [("phys", "quarantine", "human", 1, "q"), ("phys", "lift", "human", 5, "l")]
    assert [o["kind"] for o in events if o["type"] == "override"] == ["quarantine", "lift"]
    held = _quarantined_by_step(events, 6)
    for e in (e for e in events if e["type"] == "exchange"):
        assert not set(e["tutors"]) & held[e["global_step"]]
        assert set(e["quarantined"]) <= held[e["global_step"]]
    assert any("phys" in e["quarantined"] for e in events if e["type"] == "exchange")   # it wrote in the shadow


@pytest.mark.parametrize("auto", [True, False])
def test_seeded_evidence_quarantines_a_tutor_only_with_auto_quarantine(tmp_path, tiny_cache, auto):
    """bio starts with 4 breaks in 4 opportunities on every domain (Wilson lower bound 0.51 > 0.5): with
    auto_quarantine its feedback is never used while the trust events say it is held (it writes in the
    shadow: routing ``all`` asks every cognizant peer), and any lift comes from the run's own probes;
    without, nothing is quarantined and bio tutors."""
    from opcod_core.trainer import Trainer
    from opcod_core.observer import CollectingObserver

    cfg = three(trust={"auto_quarantine": auto}, break_rate={"samples_per_step": 4}, routing={"mode": "all"})
    obs = CollectingObserver()
    tr = Trainer(cfg, tmp_path / "o", observer=obs, cache_dir=tiny_cache)
    for d in cfg.data.domains:
        tr.trust, _ = tr.trust.observe("bio", d, 4, 4, step=0)
    assert tr.trust.quarantined() == (frozenset({"bio"}) if auto else frozenset())
    assert tr.run().status == "finished"
    events = obs.dicts()
    ex = [e for e in events if e["type"] == "exchange"]
    if not auto:
        assert not [e for e in events if e["type"] == "trust"] and not any(e["quarantined"] for e in ex)
        assert any("bio" in e["tutors"] for e in ex)
        return
    held = _quarantined_by_step(events, 6, initial={"bio"})
    changes = [e for e in events if e["type"] == "trust"]
    assert all(e["source"] == "auto" for e in changes)
    if changes and changes[0]["tutor"] == "bio":   # the run's own probes of bio's shadow feedback lowered its bound
        assert changes[0]["action"] == "lift" and "at or below the threshold" in changes[0]["reason"]
    for e in ex:
        assert not set(e["tutors"]) & held[e["global_step"]]
    assert any("bio" in e["quarantined"] for e in ex)


# --- the trust glue -------------------------------------------------------------------------------------
class _Stub:
    def __init__(self, cfg):
        self.config, self.names, self.trust, self.emitted = cfg, [s.name for s in cfg.students], initial_trust(cfg), []

    def emit(self, e):
        self.emitted.append(e)


def _probe(broken: bool, tutor="phys") -> BreakEvent:
    return BreakEvent(**{**POS, "tutor": tutor}, exchange_key="k", domain="physics", tutor_cognizant=True,
                      difficulty="easy", correct_with_f=not broken, correct_without_f=True, eligible=True,
                      broken=broken)


def test_a_steps_probes_quarantine_from_the_next_step_and_emit_an_event():
    stub = _Stub(preset("tiny", {"trust": {"auto_quarantine": True}}))
    observe_step(stub, [_probe(True)] * 3, round=1, global_step=4)
    assert stub.trust.tally("phys", "physics").breaks == 3 and stub.emitted == []   # 3/3: lower bound 0.44
    observe_step(stub, [_probe(True)], round=1, global_step=5)
    (e,) = stub.emitted
    assert (e.type, e.tutor, e.action, e.source, e.step, e.domain) == ("trust", "phys", "quarantine", "auto", 6, "physics")
    off = _Stub(preset("tiny"))
    observe_step(off, [_probe(True)] * 4, round=1, global_step=5)
    assert off.emitted == [] and off.trust.quarantined() == frozenset() and off.trust.tally("phys", "physics").breaks == 4


def test_human_overrides_name_a_peer_and_emit_only_changes():
    stub = _Stub(preset("tiny"))
    apply_trust_override(stub, RunOverride("o1", "quarantine", student="phys", value="too eager"), 1, 2)
    apply_trust_override(stub, RunOverride("o2", "quarantine", student="phys"), 1, 3)   # already held: no change
    apply_trust_override(stub, RunOverride("o3", "lift", student="phys"), 1, 4)
    assert [(e.action, e.source, e.step, e.override_id) for e in stub.emitted] == [
        ("quarantine", "human", 2, "o1"), ("lift", "human", 4, "o3")]
    assert "too eager" in stub.emitted[0].reason
    with pytest.raises(ValueError, match="student"):
        apply_trust_override(stub, RunOverride("o4", "quarantine", student="nobody"), 1, 5)
