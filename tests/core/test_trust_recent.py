"""Tutor trust's recent window (``TrustState.recent``): a tutor that turns bad after a clean record is
quarantined on its last W opportunities, where the whole run's counts would not notice it in time."""

import json

import pytest

from opcod_core.config import preset
from opcod_core.trust import Tally, TrustState, wilson_interval
from opcod_core.events import BreakEvent
from opcod_core.trust_run import initial_trust, observe_step, restore_trust


def _probes(tutor: str, domain: str, outcomes: str) -> list[dict]:
    """One probe per character: 'b' a break, 'o' an opportunity kept, '-' a probe that was not one."""
    return [{"tutor": tutor, "domain": domain, "correct_without_f": ch != "-", "broken": ch == "b"}
            for ch in outcomes]


def _turns_bad(state: TrustState) -> tuple[TrustState, list[tuple[int, object]]]:
    """50 clean opportunities (steps 0-9), then one break per step (steps 10-29): the poisoned tutor."""
    changes = []
    for step in range(10):
        state, c = state.observe_samples(_probes("B", "x", "ooooo"), step=step)
        changes += [(step, ch) for ch in c]
    for step in range(10, 30):
        state, c = state.observe_samples(_probes("B", "x", "b-"), step=step)
        changes += [(step, ch) for ch in c]
    return state, changes


def test_a_clean_record_hides_a_tutor_that_turns_bad_from_the_whole_run_rule():
    s, changes = _turns_bad(TrustState())
    assert changes == [] and s.tally("B", "x") == Tally(70, 20)
    assert wilson_interval(20, 70)[0] < 0.2            # the bound the whole run's counts give


def test_the_recent_window_quarantines_it_on_its_last_w_opportunities():
    # With W = 20 the window holds 50-k clean outcomes less each step; 15 breaks in 20 is the first count
    # whose lower bound exceeds 0.5 (14/20: 0.481, 15/20: 0.531), reached at the 15th bad step (step 24).
    assert wilson_interval(14, 20)[0] <= 0.5 < wilson_interval(15, 20)[0]
    s, changes = _turns_bad(TrustState(recent=20))
    [(step, c)] = changes
    assert step == 24 and (c.tutor, c.action, c.source, c.step, c.domain) == ("B", "quarantine", "auto", 24, "x")
    for part in ("15 breaks in 20 opportunities in its last 20 opportunities", "rate 0.750", "threshold 0.5"):
        assert part in c.reason
    assert s.recent_window("B", "x") == Tally(20, 20) and s.tally("B", "x") == Tally(70, 20)


def test_the_window_keeps_the_last_w_outcomes_in_the_order_they_came():
    s, _ = TrustState(recent=4).observe_samples(_probes("B", "x", "bbo-ob"), step=0)
    assert s.history["B"]["x"] == (True, False, False, True)      # the non-opportunity is not an outcome
    s, _ = s.observe_samples(_probes("B", "y", "b"), step=1)
    assert s.recent_window("B", "x") == Tally(4, 2) and s.recent_window("B", "y") == Tally(1, 1)


def test_an_aggregate_observation_enters_breaks_first():
    # a window that cuts through an aggregate keeps its non-breaks: the conservative side
    s, _ = TrustState(recent=4).observe("B", "x", 6, 3, step=0)
    assert s.recent_window("B", "x") == Tally(4, 1)


def test_lifted_automatically_when_both_bounds_fall_back():
    s, _ = _turns_bad(TrustState(recent=20))
    assert s.quarantined() == {"B"}
    lifts = []
    for step in range(30, 40):            # clean again: the window fills with kept opportunities
        s, c = s.observe_samples(_probes("B", "x", "o"), step=step)
        lifts += [(step, ch) for ch in c]
    # 20 - k breaks left in the window after k clean steps: 14/20 at step 35 is the first at or below 0.5
    [(step, c)] = lifts
    assert step == 35 and (c.action, c.source) == ("lift", "auto") and "every domain" in c.reason
    assert s.recent_window("B", "x") == Tally(20, 10)


def test_window_off_keeps_no_outcomes_and_changes_nothing():
    a, ca = _turns_bad(TrustState())
    assert a.history == {} and a.recent is None and ca == []


def test_a_human_lift_starts_the_recent_window_afresh():
    s, _ = _turns_bad(TrustState(recent=20))
    s, c = s.lift("B", step=30, reason="checked by hand")
    assert c.action == "lift" and s.recent_window("B", "x") == Tally(0, 0)
    s, changes = s.observe_samples(_probes("B", "x", "bbb"), step=31)      # 3/3: 0.438, not over
    assert changes == () and not s.quarantined()
    s, [c] = s.observe_samples(_probes("B", "x", "b"), step=32)            # 4/4: 0.510
    assert c.action == "quarantine" and "since the human lift at step 30" in c.reason


def test_reconfigure_sets_narrows_and_turns_the_window_off():
    s, _ = _turns_bad(TrustState(recent=20))
    narrow, changes = s.reconfigure(step=30, recent=8)
    assert narrow.recent == 8 and narrow.history["B"]["x"] == (True,) * 8 and changes == ()
    off, changes = s.reconfigure(step=30, recent=None)
    assert off.recent is None and off.history == {}
    assert [(c.tutor, c.action, c.source) for c in changes] == [("B", "lift", "auto")]
    same, changes = s.reconfigure(step=30, threshold=0.5)              # recent left out: unchanged
    assert same.recent == 20 and same.history == s.history and changes == ()


def test_round_trip_through_json_keeps_the_window():
    s, _ = _turns_bad(TrustState(recent=20))
    back = TrustState.from_dict(json.loads(json.dumps(s.to_dict())))
    assert back == s
    a, ca = s.observe_samples(_probes("B", "x", "oooooo"), step=30)
    b, cb = back.observe_samples(_probes("B", "x", "oooooo"), step=30)
    assert a == b and ca == cb and ca                                     # 14/20 after six clean: lifted
    assert TrustState.from_dict({}).recent is None                        # a checkpoint from before the window


@pytest.mark.parametrize("bad", [0, -3, True, 2.5, "20"])
def test_bad_windows_are_refused_by_name(bad):
    with pytest.raises(ValueError, match="recent"):
        TrustState(recent=bad)
    with pytest.raises(ValueError, match="recent"):
        TrustState().reconfigure(step=0, recent=bad)


def test_the_run_config_reaches_the_trainers_trust():
    assert initial_trust(preset("tiny", {"trust": {"auto_quarantine": True, "recent": 20}})).recent == 20
    assert initial_trust(preset("tiny")).recent is None


class _Trainer:
    """What the trust glue reads of a trainer: its config, peers, trust and events."""

    def __init__(self, cfg):
        self.config, self.names, self.trust, self.emitted = cfg, [s.name for s in cfg.students], initial_trust(cfg), []

    def emit(self, e):
        self.emitted.append(e)


def _event(g: int, broken: bool) -> BreakEvent:
    return BreakEvent(round=1, direction=1, step=0, global_step=g, tutee="chem", tutor="phys", exchange_key="k",
                      domain="physics", tutor_cognizant=True, difficulty="easy", correct_with_f=not broken,
                      correct_without_f=True, eligible=True, broken=broken)


def test_the_trainer_glue_quarantines_on_the_window_and_a_resume_keeps_it():
    cfg = preset("tiny", {"trust": {"auto_quarantine": True, "recent": 4}})
    tr = _Trainer(cfg)
    for g in range(5):
        observe_step(tr, [_event(g, False)] * 4, round=1, global_step=g)    # 20 clean opportunities
    checkpoint = tr.trust.to_dict()
    observe_step(tr, [_event(5, True)] * 4, round=1, global_step=5)        # 4/4 recent; 4/24 over the run
    (e,) = tr.emitted
    assert (e.tutor, e.action, e.step) == ("phys", "quarantine", 6) and "in its last 4 opportunities" in e.reason
    resumed = _Trainer(cfg)
    restore_trust(resumed, checkpoint, round=1, global_step=5)
    assert resumed.trust.recent == 4 and resumed.emitted == []
    observe_step(resumed, [_event(5, True)] * 4, round=1, global_step=5)   # the same step again: the same change
    assert [(x.tutor, x.action, x.step, x.reason) for x in resumed.emitted] == [(e.tutor, e.action, e.step, e.reason)]
    whole_run = _Trainer(preset("tiny", {"trust": {"auto_quarantine": True}}))
    restore_trust(whole_run, checkpoint, round=1, global_step=5)           # a fork without the window
    assert whole_run.trust.recent is None and whole_run.trust.history == {}
    observe_step(whole_run, [_event(5, True)] * 4, round=1, global_step=5)
    assert whole_run.emitted == []
