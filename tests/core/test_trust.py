"""Tutor trust: Wilson intervals by hand, the automatic quarantine and its lift, human overrides, resume."""

import json

import pytest

from opcod_core.events import BreakEvent
from opcod_core.trust import Tally, TrustChange, TrustState, wilson_interval


# --- Wilson score interval --------------------------------------------------------------------------
def test_wilson_3_of_10_by_hand():
    # p = 0.3, z = 1.96, z^2 = 3.8416, z^2/n = 0.38416, 1 + z^2/n = 1.38416
    # centre = (0.3 + 3.8416/20) / 1.38416 = 0.49208 / 1.38416 = 0.355508
    # half   = 1.96 / 1.38416 * sqrt(0.21/10 + 3.8416/400) = 1.416021 * sqrt(0.030604)
    #        = 1.416021 * 0.174940 = 0.247719
    # interval = (0.107789, 0.603227)
    lo, hi = wilson_interval(3, 10)
    assert lo == pytest.approx(0.107789, abs=1e-6)
    assert hi == pytest.approx(0.603227, abs=1e-6)


@pytest.mark.parametrize("k, n, z, expected", [
    (0, 0, 1.96, (0.0, 1.0)),                   # no evidence: every rate possible
    # k = 0: lower exactly 0; upper = 2 * (3.8416/20) / 1.38416 = 0.277540
    (0, 10, 1.96, (0.0, 0.277540)),
    # k = n: the mirror image
    (10, 10, 1.96, (1 - 0.277540, 1.0)),
    # 4/4: centre = (1 + 0.4802) / 1.9604 = 0.755050, half = 1.96/1.9604 * sqrt(3.8416/64) = 0.244950
    (4, 4, 1.96, (0.510100, 1.0)),
    # 3/3: centre = (1 + 0.640267) / 2.280533 = 0.719250, half = 0.859449 * 0.326667 = 0.280756
    (3, 3, 1.96, (0.438494, 1.0)),
    # z = 1, 1/2: centre = (0.5 + 0.25) / 1.5 = 0.5, half = (1/1.5) * sqrt(0.125 + 0.0625) = 0.288675
    (1, 2, 1.0, (0.211325, 0.788675)),
])
def test_wilson_by_hand(k, n, z, expected):
    assert wilson_interval(k, n, z) == pytest.approx(expected, abs=1e-6)


def test_wilson_limits_are_exact():
    assert wilson_interval(0, 7)[0] == 0.0
    assert wilson_interval(7, 7)[1] == 1.0
    assert wilson_interval(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize("args, field", [((3, 2), "breaks"), ((-1, 2), "breaks"), ((1, 2.0), "opportunities"),
                                         ((True, 2), "breaks"), ((1, 2, 0), "z"), ((1, 2, float("inf")), "z")])
def test_wilson_rejects_bad_input(args, field):
    with pytest.raises(ValueError, match=field):
        wilson_interval(*args)


# --- counts ------------------------------------------------------------------------------------------
def test_counts_add_up_and_rate_is_undefined_without_opportunity():
    s = TrustState()
    assert s.tally("B", "x") == Tally(0, 0) and s.tally("B", "x").rate is None
    assert s.interval("B", "x") == (0.0, 1.0)
    s, _ = s.observe("B", "x", 4, 1, step=0)
    s, _ = s.observe("B", "x", 6, 2, step=1)
    assert s.tally("B", "x") == Tally(10, 3)
    assert s.interval("B", "x") == pytest.approx((0.107789, 0.603227), abs=1e-6)
    [row] = s.rows()
    assert (row.tutor, row.domain, row.opportunities, row.breaks) == ("B", "x", 10, 3)
    assert row.rate == pytest.approx(0.3)


def test_observe_rejects_more_breaks_than_opportunities():
    with pytest.raises(ValueError, match="breaks <= opportunities"):
        TrustState().observe("B", "x", 2, 3, step=0)


def test_updates_do_not_touch_the_old_state():
    s0 = TrustState()
    s1, _ = s0.observe("B", "x", 4, 4, step=0)
    assert s0.tally("B", "x") == Tally() and not s0.quarantined()
    assert s1.quarantined() == {"B"}


def _probe(tutor, domain, without_f, with_f, step=0):
    return BreakEvent(round=1, direction=1, step=step, global_step=step, tutee="A", tutor=tutor,
                      exchange_key=f"k{step}", domain=domain, tutor_cognizant=True, difficulty="easy",
                      correct_with_f=with_f, correct_without_f=without_f, eligible=without_f,
                      broken=without_f and not with_f).to_dict()


def test_observe_samples_counts_break_probes_like_breakrate():
    probes = [_probe("B", "x", True, False), _probe("B", "x", True, True), _probe("B", "x", False, False),
              _probe("C", "x", True, False), _probe("B", "y", True, True)]
    s, changes = TrustState().observe_samples(probes, step=3)
    # an opportunity: right without f; a break: right without f and wrong with f
    assert s.tally("B", "x") == Tally(2, 1)
    assert s.tally("C", "x") == Tally(1, 1)
    assert s.tally("B", "y") == Tally(1, 0)
    assert changes == ()


# --- automatic quarantine ------------------------------------------------------------------------------
def test_auto_quarantine_when_lower_bound_exceeds_threshold():
    s, changes = TrustState().observe("B", "x", 3, 3, step=1)     # lower 0.438 <= 0.5
    assert changes == () and not s.quarantined()
    s, changes = s.observe("B", "x", 1, 1, step=2)                # 4/4: lower 0.510 > 0.5
    [c] = changes
    assert (c.tutor, c.action, c.source, c.step, c.domain) == ("B", "quarantine", "auto", 2, "x")
    for part in ("'B'", "'x'", "4 breaks in 4 opportunities", "rate 1.000", "0.510", "threshold 0.5"):
        assert part in c.reason
    assert s.quarantined() == {"B"}
    s, changes = s.observe("B", "x", 1, 1, step=3)                # still over: no new change
    assert changes == () and s.quarantined() == {"B"}


def test_auto_lift_needs_every_domain_back_at_or_below_threshold():
    s, _ = TrustState().observe("B", "x", 4, 4, step=0)
    s, _ = s.observe("B", "y", 4, 4, step=0)
    assert s.quarantined() == {"B"}
    s, changes = s.observe("B", "x", 20, 0, step=1)               # x: 4/24, y still 4/4
    assert changes == () and s.quarantined() == {"B"}
    s, changes = s.observe("B", "y", 6, 0, step=2)                # y: 4/10, lower 0.168
    [c] = changes
    assert (c.tutor, c.action, c.source, c.step) == ("B", "lift", "auto", 2)
    assert "every domain" in c.reason
    assert not s.quarantined()


def test_threshold_is_a_parameter_and_the_comparison_is_strict():
    s, _ = TrustState(threshold=0.4).observe("B", "x", 3, 3, step=0)   # 0.438 > 0.4
    assert s.quarantined() == {"B"}
    at = wilson_interval(4, 4)[0]
    s, _ = TrustState(threshold=at).observe("B", "x", 4, 4, step=0)    # lower == threshold: not over
    assert not s.quarantined()


def test_auto_quarantine_off_tracks_counts_only():
    s, changes = TrustState(auto_quarantine=False).observe("B", "x", 10, 10, step=0)
    assert changes == () and not s.quarantined()
    assert s.tally("B", "x") == Tally(10, 10)
    assert s.interval("B", "x")[0] == pytest.approx(0.722460, abs=1e-6)
    s, changes = s.reconfigure(step=5, auto_quarantine=True)
    assert [(c.tutor, c.action, c.source, c.step) for c in changes] == [("B", "quarantine", "auto", 5)]
    s, changes = s.reconfigure(step=6, auto_quarantine=False)
    assert [(c.tutor, c.action, c.source) for c in changes] == [("B", "lift", "auto")]
    assert not s.quarantined()


@pytest.mark.parametrize("kwargs, field", [({"threshold": 1.5}, "threshold"), ({"z": -1}, "z"),
                                           ({"auto_quarantine": "yes"}, "auto_quarantine")])
def test_bad_settings_are_refused(kwargs, field):
    with pytest.raises(ValueError, match=field):
        TrustState(**kwargs)


# --- people ----------------------------------------------------------------------------------------------
def test_human_lift_is_not_undone_by_the_old_evidence():
    s, _ = TrustState().observe("B", "x", 4, 4, step=1)
    s, c = s.lift("B", step=2, reason="probe artefact")
    assert (c.tutor, c.action, c.source, c.step) == ("B", "lift", "human", 2)
    assert "probe artefact" in c.reason and "was auto" in c.reason
    # cumulative 5/5 would be over the threshold, but the rule only judges the 1/1 since the lift
    s, changes = s.observe("B", "x", 1, 1, step=3)
    assert changes == () and not s.quarantined()
    assert s.tally("B", "x") == Tally(5, 5) and s.window("B", "x") == Tally(1, 1)
    # new evidence alone: 4 breaks in 4 since the lift
    s, changes = s.observe("B", "x", 3, 3, step=4)
    [c] = changes
    assert (c.action, c.source) == ("quarantine", "auto")
    assert "since the human lift at step 2" in c.reason and "4 breaks in 4" in c.reason


def test_human_quarantine_is_lifted_only_by_a_person():
    s, c = TrustState().quarantine("C", step=1, reason="writes nonsense")
    assert (c.tutor, c.action, c.source, c.step) == ("C", "quarantine", "human", 1)
    s, changes = s.observe("C", "x", 100, 0, step=2)
    assert changes == () and s.quarantined() == {"C"}
    s2, again = s.quarantine("C", step=3)
    assert again is None and s2 is s
    s, c = s.lift("C", step=4)
    assert (c.action, c.source) == ("lift", "human") and not s.quarantined()


def test_human_quarantine_takes_over_an_auto_one():
    s, _ = TrustState().observe("B", "x", 4, 4, step=0)
    s, c = s.quarantine("B", step=1)
    assert (c.action, c.source) == ("quarantine", "human") and "was auto" in c.reason
    s, changes = s.observe("B", "x", 100, 0, step=2)      # the auto lift no longer applies
    assert changes == () and s.quarantined() == {"B"}


def test_lifting_a_free_tutor_changes_nothing():
    s, _ = TrustState().observe("B", "x", 3, 0, step=0)
    s2, c = s.lift("B", step=1)
    assert c is None and s2 is s and "B" not in s2.baselines


# --- checkpoints ---------------------------------------------------------------------------------------
def test_round_trip_through_json_resumes_exactly():
    s = TrustState(threshold=0.45, z=1.64, auto_quarantine=True)
    s, _ = s.observe("B", "x", 4, 4, step=1)
    s, _ = s.observe("C", "y", 7, 2, step=1)
    s, _ = s.lift("B", step=2, reason="checked by hand")
    s, _ = s.quarantine("D", step=3)
    d = json.loads(json.dumps(s.to_dict()))
    back = TrustState.from_dict(d)
    assert back == s
    assert back.to_dict() == s.to_dict()
    # the same evidence leads both to the same place
    a, ca = s.observe("B", "x", 4, 4, step=5)
    b, cb = back.observe("B", "x", 4, 4, step=5)
    assert a == b and ca == cb and ca


def test_change_round_trip():
    c = TrustChange("B", "quarantine", "auto", 7, "why", "x")
    assert TrustChange.from_dict(json.loads(json.dumps(c.to_dict()))) == c
