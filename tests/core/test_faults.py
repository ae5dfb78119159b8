"""The benchmark fault (opcod_core.faults): its config section, the wrong feedback it writes, that it replaces
the named tutor's feedback from the given step only, and what auto-quarantine does about a poisoned peer.
Runs are real three-student tiny runs (tests/core/test_peers.py ``three``); comparisons of floats are between
runs in this process only."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from opcod_core.anchoring import classify_feedback
from opcod_core.config import RunConfig, format_validation_error, preset, preset_names
from opcod_core.data import load_dataset
from opcod_core.faults import poisoner
from opcod_core.trainer import data_spec

from test_peers import _quarantined_by_step, three
from tiny_support import run


# --- the config section -------------------------------------------------------------------------------
def test_faults_section_is_off_by_default_and_left_out_of_the_json():
    for name in preset_names():
        cfg = preset(name)
        assert cfg.faults.poison is None and "faults" not in cfg.to_dict()
    on = preset("tiny", {"faults": {"poison": {"tutor": "phys", "from_step": 3}}})
    d = on.to_dict()
    assert d["faults"] == {"poison": {"tutor": "phys", "from_step": 3, "kind": "corrupt_hint"}}
    assert RunConfig.from_dict(d) == on and RunConfig.from_yaml(on.to_yaml()) == on
    assert on.replace({"faults": {"poison": None}}).to_dict() == preset("tiny").to_dict()


@pytest.mark.parametrize("poison, field", [({"tutor": "nobody"}, "faults.poison.tutor"),
                                           ({"from_step": 2}, "faults.poison.tutor"),
                                           ({"tutor": "phys", "from_step": -1}, "faults.poison.from_step"),
                                           ({"tutor": "phys", "kind": "swap"}, "faults.poison.kind")])
def test_bad_poison_names_the_field(poison, field):
    with pytest.raises(ValidationError) as err:
        preset("tiny", {"faults": {"poison": poison}})
    lines = format_validation_error(err.value)
    assert any(field in line for line in lines), lines


def test_the_warm_up_key_ignores_the_fault():
    from opcod_core.build import warmup_key

    cfg = preset("tiny")
    on = cfg.replace({"faults": {"poison": {"tutor": "chem"}}})
    assert [warmup_key(st, cfg, i) for i, st in enumerate(cfg.students)] == [
        warmup_key(st, on, i) for i, st in enumerate(on.students)]


# --- the wrong feedback ---------------------------------------------------------------------------------
def test_sciworld3_items_get_their_corrupted_hint_in_a_form_anchoring_keeps():
    cfg = preset("sciworld3", {"faults": {"poison": {"tutor": "phys", "from_step": 4}}})
    data = load_dataset(data_spec(cfg))
    train = [it for d in cfg.data.domains for it in data.get(d, "train")]
    p = poisoner(cfg, train)
    assert p.applies("phys", 4) and p.applies("phys", 9) and not p.applies("phys", 3) and not p.applies("chem", 9)
    for it in train[:5] + train[-5:]:
        raw = p.feedback(it, 4, tutor_concept="ignored")
        assert raw == f"<concept>{it.meta['concept']}</concept> {it.meta['corrupt_hint']}"
        assert it.meta["corrupt_hint"] != it.meta["hint"]
        v = classify_feedback(raw, it.question, gold=it.gold, choices=list(it.choices), labels=list(it.labels))
        assert v.category == "kept" and it.meta["corrupt_hint"].split(":")[0] in v.sanitised


def test_without_a_corrupted_hint_another_items_hint_of_the_same_domain_is_drawn_by_seed():
    cfg = preset("tiny", {"faults": {"poison": {"tutor": "chem"}}})
    data = load_dataset(data_spec(cfg))
    train = [it for d in cfg.data.domains for it in data.get(d, "train")]
    p = poisoner(cfg, train)
    item = train[0]
    facts = {it.meta["fact"] for it in train if it.domain == item.domain} - {item.meta["fact"]}
    drawn = {p.feedback(item, g, None) for g in range(20)}
    for raw in drawn:
        concept, hint = raw.removeprefix("<concept>").split("</concept> ")
        assert concept == item.meta["concept"] and hint in facts
    assert len(drawn) > 1                                        # the step is part of the seed
    assert drawn == {p.feedback(item, g, None) for g in range(20)}   # and nothing else is
    lone = poisoner(cfg, [item])                                 # no other item to take a hint from
    assert lone.feedback(item, 0, None) is None


# --- in a run -------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_the_named_tutors_feedback_is_replaced_from_the_given_step_only(tmp_path, tiny_cache):
    """Routing ``all``: every peer writes on every question, so each step has feedback from every tutor but
    its tutee; bio's is poisoned from global step 3 of 6 (round 2), no one else's ever is, and the exchanges
    before step 3 are those of the same run without the fault."""
    clean_cfg = three(rounds=2, steps=1, routing={"mode": "all"})
    _, clean, _ = run(clean_cfg, tmp_path, tiny_cache, out="clean")
    cfg = clean_cfg.replace({"faults": {"poison": {"tutor": "bio", "from_step": 3}}})
    _, obs, res = run(cfg, tmp_path, tiny_cache, out="poisoned")
    assert res.status == "finished"
    events = obs.dicts()
    assert events[0]["config"]["faults"]["poison"]["tutor"] == "bio"
    records = [(e["global_step"], e, fb) for e in events if e["type"] == "exchange" for fb in e["feedbacks"]]
    assert {g for g, _, fb in records if fb["tutor"] == "bio"} == {0, 1, 3, 4}   # bio is tutee at 2 and 5
    for g, e, fb in records:
        assert fb.get("poisoned", False) == (fb["tutor"] == "bio" and g >= 3), (g, fb)
        if fb.get("poisoned"):   # the built-in items have no corrupted hint: another item's fact, anchored
            assert fb["raw"].startswith("<concept>") and "</concept> " in fb["raw"] and fb["category"] == "kept"
    assert any(fb.get("poisoned") and fb["used"] for _, _, fb in records)   # poisoned feedback reached a teacher
    before = [e for e in clean.dicts() if e["type"] == "exchange" and e["global_step"] < 3]
    assert before == [e for e in events if e["type"] == "exchange" and e["global_step"] < 3]
    after_clean = {(e["key"], fb["tutor"]): fb["raw"] for e in clean.dicts() if e["type"] == "exchange"
                   for fb in e["feedbacks"]}
    for g, e, fb in records:
        if g >= 3 and fb["tutor"] == "bio":
            assert fb["raw"] != after_clean[(e["key"], "bio")]


@pytest.mark.slow
@pytest.mark.parametrize("auto", [True, False])
def test_auto_quarantine_catches_a_strongly_poisoned_peer_and_off_never_does(tmp_path, tiny_cache, auto):
    """Built so that the rule fires at the first break: bio is poisoned from step 0, routing ``all`` makes it
    write on every question, every correct rollout is probed (a pool larger than any step's) and the
    threshold is 0, so a single break of its feedback (Wilson lower bound > 0) quarantines it from the next
    step (measured here: about 50 eligible probes of bio's feedback, 7 of them broken). Its feedback is then never used
    while held; with auto_quarantine off the same evidence quarantines no one."""
    cfg = three(rounds=2, steps=3, routing={"mode": "all"}, rollout={"n": 8}, break_rate={"samples_per_step": 64},
                trust={"auto_quarantine": auto, "threshold": 0.0},
                faults={"poison": {"tutor": "bio", "from_step": 0}})
    _, obs, res = run(cfg, tmp_path, tiny_cache, out=f"auto-{auto}")
    assert res.status == "finished"
    events = obs.dicts()
    bio_breaks = [b for b in events if b["type"] == "break" and b["tutor"] == "bio" and b["broken"]]
    trust = [e for e in events if e["type"] == "trust"]
    if not auto:
        assert trust == [] and res.summary["trust"]["quarantined"] == {}   # whatever the evidence
        return
    bio = [e for e in trust if e["tutor"] == "bio"]
    if not bio_breaks:
        # Whether a probe breaks depends on the tiny model's greedy answers (another CPU's kernels change
        # them; ~7 of ~50 broke here). The rule is checked on the evidence that occurred: no break, no
        # quarantine. The quarantine itself is covered by construction in tests/core/test_trust.py.
        assert bio == []
        return
    first = min(b["global_step"] for b in bio_breaks)
    assert bio[0]["action"] == "quarantine" and bio[0]["source"] == "auto" and bio[0]["step"] == first + 1
    held = _quarantined_by_step(events, 18)
    for e in (e for e in events if e["type"] == "exchange"):
        assert not set(e["tutors"]) & held[e["global_step"]]
        for fb in e["feedbacks"]:
            if fb["tutor"] in held[e["global_step"]]:
                assert fb["quarantined"] and fb["used"] is None
