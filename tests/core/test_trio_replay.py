"""The trio report's recent-window replay (``trio_analysis.replay``): a run without quarantines, replayed
through ``TrustState`` with ``trust.recent``, gives the first quarantine that rule would have made; the replay
must reproduce the run's own counts first, and a quarantine in a clean run or before the poison is a false
alarm. Hand-made runs, so every step is known; the real runs are replayed by the report."""

from __future__ import annotations

from opcod_core.bench.trio import POISON_OFF, POISON_ON, TRIO, TrioPlan, poison_settings, trio_config, variants
from opcod_core.bench.trio_analysis import analyse, replay, replay_recent
from opcod_core.trust import TrustState

POISON = {"tutor": "chem", "from_step": 10, "within": 8, "threshold": 0.5}


def _probe(step, broken, domain="chemistry", tutor="chem", eligible=True):
    return {"tutor": tutor, "domain": domain, "step": step, "correct_without_f": eligible,
            "broken": broken and eligible, "shadow": False}


def _run(method, seed, breaks, trust=()):
    """A run whose summary has the trust rows its probes give (as the trainer writes them)."""
    state = TrustState(auto_quarantine=False)
    for g in sorted({b["step"] for b in breaks}):
        state, _ = state.observe_samples([b for b in breaks if b["step"] == g], step=g + 1)
    rows = [r.__dict__ for r in state.rows()]
    return {"method": method, "seed": seed, "breaks": list(breaks), "trust": list(trust),
            "summary": {"trust": {"rows": rows}, "students": {}}}


def _poisoned(seed, bad_from=10):
    """chem: 30 clean opportunities (steps 0-9), then from ``bad_from`` two probes a step, both broken."""
    clean = [_probe(g, False) for g in range(10) for _ in range(3)]
    return clean + [_probe(g, True) for g in range(bad_from, 20) for _ in range(2)]


def test_the_replay_finds_the_first_quarantine_of_the_window_rule():
    run = _run(POISON_OFF, 0, _poisoned(0))
    plain = replay(run, recent=10_000, threshold=0.5, z=1.96)              # a window as long as the run
    assert plain["reproduces"] and plain["first"] is None                   # the whole-run rule: 20/50, never
    r = replay(run, recent=8, threshold=0.5, z=1.96)
    # window 8: 7 breaks in 8 is the first count whose lower bound exceeds 0.5 (6/8: 0.41). Two breaks a step
    # from step 10 give 2, 4, 6, 8 of the last 8 after steps 10-13; step 13's probes are observed at step 14,
    # the step the quarantine holds from
    assert r["reproduces"] and r["first"]["tutor"] == "chem" and r["first"]["step"] == 14
    assert r["first"]["recent"] == {"opportunities": 8, "breaks": 8} and "last 8 opportunities" in r["first"]["reason"]


def test_a_run_whose_probes_do_not_give_its_counts_is_not_replayed():
    run = _run(POISON_OFF, 0, _poisoned(0))
    run["breaks"] = run["breaks"][:-1]                       # one probe lost
    r = replay(run, recent=8, threshold=0.5, z=1.96)
    assert not r["reproduces"] and r["first"] is None and "do not give" in r["why"]
    quarantined = _run(POISON_ON, 0, _poisoned(0), trust=[{"tutor": "chem", "action": "quarantine", "step": 14}])
    r = replay(quarantined, recent=8, threshold=0.5, z=1.96)
    assert r["reproduces"] and r["first"] is None and "quarantined someone" in r["why"]


def _results(runs):
    return {"runs": runs, "poison": POISON, "config": {}, "students": [], "domains": [], "pair_configs": {},
            "roles": {}}


def test_claim_1_under_the_window_rule_and_false_alarms():
    runs = [_run(POISON_OFF, 0, _poisoned(0)),                              # caught at 14: 4 steps after the poison
            _run(POISON_OFF, 1, _poisoned(1, bad_from=15)),                 # caught at 19: 9 steps, bound 8
            _run(TRIO, 0, [_probe(g, g >= 2) for g in range(6) for _ in range(2)])]   # a clean run that "breaks"
    out = replay_recent(_results(runs), recent=8)
    rows = {(r["variant"], r["seed"]): r for r in out["rows"]}
    assert (rows[(POISON_OFF, 0)]["steps_after_poison"], rows[(POISON_OFF, 0)]["within"]) == (4, True)
    assert (rows[(POISON_OFF, 1)]["steps_after_poison"], rows[(POISON_OFF, 1)]["within"]) == (9, False)
    assert rows[(TRIO, 0)]["false_alarm"] and rows[(TRIO, 0)]["steps_after_poison"] is None
    assert out["verdict"] == "fails: seed 1: after 9 steps" and out["false_alarms"] == [f"{TRIO} seed 0"]
    bad_early = [_probe(g, True) for g in range(12) for _ in range(2)]      # 8/8 after step 3: holds from 4
    early = replay_recent(_results([_run(POISON_OFF, 2, bad_early)]), recent=8)
    assert early["rows"][0]["false_alarm"] and early["verdict"] == "fails: seed 2: false alarm"   # before the poison
    ok = replay_recent(_results([_run(POISON_OFF, 0, _poisoned(0))]), recent=8)
    assert ok["verdict"] == "holds" and ok["false_alarms"] == []
    # the report's analysis replays only when asked
    res = {**_results([_run(POISON_OFF, 0, _poisoned(0))]), "replay_recent": 8}
    res["runs"][0]["summary"]["students"] = {}
    assert analyse(res)["replay"]["verdict"] == "holds"
    assert "replay" not in analyse({**res, "replay_recent": None})


def test_the_poisoned_runs_carry_the_window_when_asked():
    plan = TrioPlan(seeds=[0], poison="chem", recent=20)
    runs = {label: cfg for label, cfg, _ in variants(plan)}
    assert runs[POISON_ON].trust.recent == 20 and runs[POISON_OFF].trust.recent == 20
    assert runs[TRIO].trust.recent is None
    assert poison_settings(plan, trio_config(plan))["recent"] == 20
    assert "recent" not in poison_settings(TrioPlan(seeds=[0], poison="chem"), trio_config(plan))


def test_the_replay_is_checked_against_the_real_runs_that_used_the_same_window():
    from opcod_core.bench.trio_report import _real_lines

    def quarantine(step):
        return [{"tutor": "chem", "action": "quarantine", "source": "auto", "step": step}]

    runs = [_run(POISON_OFF, 0, _poisoned(0)), _run(POISON_OFF, 1, _poisoned(1, bad_from=15)),   # replayed: 14, 19
            _run(POISON_ON, 0, _poisoned(0), trust=quarantine(14)),                              # real: the same
            _run(POISON_ON, 1, _poisoned(1, bad_from=15), trust=quarantine(18))]                 # real: one earlier
    windowed = {**_results(runs), "poison": {**POISON, "recent": 8}}
    out = replay_recent(windowed, recent=8)
    assert out["real"] == [{"seed": 0, "real": "chem@14", "replayed": "chem@14", "equal": True},
                           {"seed": 1, "real": "chem@18", "replayed": "chem@19", "equal": False}]
    text = " ".join(_real_lines(out))
    assert "differ** at seed(s) 1" in text and "seed 0: real chem@14, replayed chem@14" in text
    same = replay_recent({**windowed, "runs": runs[:1] + runs[2:3]}, recent=8)
    assert [x["equal"] for x in same["real"]] == [True] and "predicted every" in _real_lines(same)[0]
    # the on runs used another rule (the whole-run one, or another window): nothing real to check against
    assert replay_recent(_results(runs), recent=8)["real"] == [] and _real_lines(replay_recent(_results(runs), 8)) == []
    assert replay_recent({**windowed, "poison": {**POISON, "recent": 20}}, recent=8)["real"] == []
    # a quarantine-on run that never quarantined against a replay that did
    never = replay_recent({**windowed, "runs": runs[:1] + [_run(POISON_ON, 0, _poisoned(0))]}, recent=8)
    assert never["real"] == [{"seed": 0, "real": None, "replayed": "chem@14", "equal": False}]
    # an off run whose probes do not give its counts has no replay to check: its seed is left out
    lossy = _run(POISON_OFF, 1, _poisoned(1, bad_from=15))
    lossy["breaks"] = lossy["breaks"][:-1]
    assert [x["seed"] for x in replay_recent({**windowed, "runs": [runs[0], lossy] + runs[2:]}, 8)["real"]] == [0]
