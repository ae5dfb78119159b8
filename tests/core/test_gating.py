"""Gating: cognizance gap by hand, the tau boundary, every mode, human overrides."""

import pytest

import json
import math

from opcod_core.gating import (GateRecord, cognizance_gap, decide_gates, gap_uncertainty, mean_standard_error,
                               tutor_allowed)

TWO = {"A": {"x": 0.8, "y": 0.4}, "B": {"x": 0.6, "y": 0.5}}
STRONG = {"A": "x", "B": "y"}


@pytest.mark.parametrize(
    "scores, expected",
    [
        # s* = {x: 0.8, y: 0.5}; dA = 0 + 0.1/0.5 = 0.2; dB = 0.2/0.8 + 0 = 0.25
        (TWO, {"A": 0.2, "B": 0.25}),
        # identical students: nobody is behind
        ({"A": {"x": 0.5, "y": 0.5}, "B": {"x": 0.5, "y": 0.5}}, {"A": 0.0, "B": 0.0}),
        # a domain nobody knows (s* = 0) contributes 0
        ({"A": {"x": 0.0, "y": 0.9}, "B": {"x": 0.0, "y": 0.3}}, {"A": 0.0, "B": 2 / 3}),
        # dominated in every domain: gaps add up; one domain at 0 gives 1 for that domain
        ({"A": {"x": 1.0, "y": 1.0}, "B": {"x": 0.0, "y": 0.5}}, {"A": 0.0, "B": 1.5}),
        # three domains, three students
        (
            {"A": {"x": 0.4, "y": 0.2, "z": 0.1}, "B": {"x": 0.2, "y": 0.4, "z": 0.1}, "C": {"x": 0.1, "y": 0.1, "z": 0.2}},
            {"A": 0.5 + 0.5, "B": 0.5 + 0.5, "C": 0.75 + 0.75},
        ),
        # a single student is its own best
        ({"A": {"x": 0.3}}, {"A": 0.0}),
    ],
)
def test_cognizance_gap_by_hand(scores, expected):
    got = cognizance_gap(scores)
    assert set(got) == set(expected)
    for k, v in expected.items():
        assert got[k] == pytest.approx(v, abs=1e-12)


@pytest.mark.parametrize(
    "scores, message",
    [
        ({}, "at least one student"),
        ({"A": {"x": 0.5}, "B": {"y": 0.5}}, "missing domain"),
        ({"A": {"x": -0.1}}, "scores['A']['x']"),
        ({"A": {"x": float("nan")}}, "finite"),
    ],
)
def test_cognizance_gap_rejects_bad_scores(scores, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        cognizance_gap(scores)


@pytest.mark.parametrize(
    "tau, dec_a, dec_b",
    [
        (0.2, "tutor", "silent"),  # dA == tau exactly (0.1/0.5 in floats): at the threshold tutors
        (0.25, "tutor", "tutor"),  # dB == tau exactly
        (0.2499, "tutor", "silent"),
        (0.1999, "silent", "silent"),
        (0.0, "silent", "silent"),
        (10.0, "tutor", "tutor"),
    ],
)
def test_cognizance_tau_boundary(tau, dec_a, dec_b):
    recs = decide_gates(1, TWO, tau, "cognizance", STRONG)
    assert recs["A"].decision == dec_a
    assert recs["B"].decision == dec_b
    assert all(r.source == "auto" and r.allowed_domains is None for r in recs.values())


def test_float_noise_at_threshold_counts_as_within():
    # (1 - 0.1) + (1 - 0.2) = 1.7000000000000002 > 1.7 in floats; the epsilon keeps it at the threshold
    scores = {"A": {"x": 0.1, "y": 0.2}, "B": {"x": 1.0, "y": 1.0}}
    delta = cognizance_gap(scores)["A"]
    assert delta > 1.7 and delta == pytest.approx(1.7)
    assert decide_gates(1, scores, 1.7, "cognizance", {})["A"].decision == "tutor"
    assert decide_gates(1, scores, 1.7 - 1e-6, "cognizance", {})["A"].decision == "silent"


@pytest.mark.parametrize(
    "mode, tau, expected",
    [
        ("cognizance", 0.2, {"A": ("tutor", None), "B": ("silent", None)}),
        ("always", 0.2, {"A": ("tutor", None), "B": ("tutor", None)}),
        ("never", 0.2, {"A": ("silent", None), "B": ("silent", None)}),
        ("domain_selective", 0.2, {"A": ("tutor", ("x",)), "B": ("tutor", ("y",))}),
        ("manual", 0.2, {"A": ("tutor", None), "B": ("silent", None)}),
        ("manual", 0.3, {"A": ("tutor", None), "B": ("tutor", None)}),
    ],
)
def test_every_mode(mode, tau, expected):
    recs = decide_gates(3, TWO, tau, mode, STRONG)
    assert set(recs) == {"A", "B"}
    for student, (decision, allowed) in expected.items():
        r = recs[student]
        assert (r.decision, r.allowed_domains) == (decision, allowed)
        assert r.mode == mode and r.round == 3 and r.student == student and r.source == "auto"
        # every record carries every number, whatever the mode
        assert r.scores == TWO[student]
        assert r.best == {"x": 0.8, "y": 0.5}
        assert r.delta == pytest.approx({"A": 0.2, "B": 0.25}[student])
        assert r.tau == tau
        assert r.reason


def test_manual_reason_mentions_humans():
    recs = decide_gates(1, TWO, 0.2, "manual", STRONG)
    assert "human" in recs["A"].reason


def test_domain_selective_unknown_strong_domain_is_silent():
    recs = decide_gates(1, TWO, 0.2, "domain_selective", {"A": "x", "B": None})
    assert recs["A"].decision == "tutor" and recs["A"].allowed_domains == ("x",)
    assert recs["B"].decision == "silent" and "unknown" in recs["B"].reason
    recs = decide_gates(1, TWO, 0.2, "domain_selective", {})
    assert all(r.decision == "silent" for r in recs.values())


@pytest.mark.parametrize(
    "mode, forced, expected",
    [
        ("cognizance", {"B": "tutor"}, {"A": ("tutor", "auto", None), "B": ("tutor", "human", None)}),
        ("cognizance", {"A": "silent"}, {"A": ("silent", "human", None), "B": ("silent", "auto", None)}),
        ("never", {"A": "tutor"}, {"A": ("tutor", "human", None), "B": ("silent", "auto", None)}),
        ("always", {"A": "silent", "B": "silent"}, {"A": ("silent", "human", None), "B": ("silent", "human", None)}),
        ("domain_selective", {"A": "tutor"}, {"A": ("tutor", "human", ("x",)), "B": ("tutor", "auto", ("y",))}),
        ("domain_selective", {"B": "silent"}, {"A": ("tutor", "auto", ("x",)), "B": ("silent", "human", None)}),
        ("manual", {"B": "tutor"}, {"A": ("tutor", "auto", None), "B": ("tutor", "human", None)}),
        ("cognizance", {}, {"A": ("tutor", "auto", None), "B": ("silent", "auto", None)}),
        ("cognizance", None, {"A": ("tutor", "auto", None), "B": ("silent", "auto", None)}),
    ],
)
def test_forced_overrides(mode, forced, expected):
    recs = decide_gates(2, TWO, 0.2, mode, STRONG, forced=forced)
    for student, (decision, source, allowed) in expected.items():
        r = recs[student]
        assert (r.decision, r.source, r.allowed_domains) == (decision, source, allowed)
        assert r.mode == mode
        assert r.delta == pytest.approx({"A": 0.2, "B": 0.25}[student])
        assert r.best == {"x": 0.8, "y": 0.5} and r.tau == 0.2
        if source == "human":
            assert "human" in r.reason


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(mode="sometimes"), "unknown gating mode"),
        (dict(forced={"C": "tutor"}), "unknown student"),
        (dict(forced={"A": "loud"}), "expected 'tutor' or 'silent'"),
        (dict(tau=float("inf")), "tau"),
    ],
)
def test_decide_gates_rejects_bad_input(kwargs, message):
    args = dict(round=1, scores=TWO, tau=0.2, mode="cognizance", strong_domains=STRONG)
    args.update(kwargs)
    with pytest.raises(ValueError, match=message):
        decide_gates(**args)


@pytest.mark.parametrize(
    "decision, allowed, domain, expected",
    [
        ("tutor", None, "x", True),
        ("tutor", None, "anything", True),
        ("tutor", ("x",), "x", True),
        ("tutor", ("x",), "y", False),
        ("tutor", (), "x", False),
        ("silent", None, "x", False),
        ("silent", ("x",), "x", False),
    ],
)
def test_tutor_allowed(decision, allowed, domain, expected):
    rec = GateRecord(round=1, student="A", scores={"x": 1.0}, best={"x": 1.0}, delta=0.0, tau=0.2, mode="cognizance",
                     decision=decision, allowed_domains=allowed)
    assert tutor_allowed(rec, domain) is expected


def test_to_dict_has_every_field_and_is_json_ready():
    import json

    rec = decide_gates(1, TWO, 0.2, "domain_selective", STRONG, forced={"B": "silent"})
    d = rec["A"].to_dict()
    assert set(d) >= {"round", "student", "scores", "best", "delta", "tau", "mode", "decision"}
    assert d["allowed_domains"] == ["x"] and d["source"] == "auto"
    assert rec["B"].to_dict()["source"] == "human"
    assert json.loads(json.dumps(d)) == d


def test_records_do_not_alias_inputs():
    scores = {"A": {"x": 0.8, "y": 0.4}, "B": {"x": 0.6, "y": 0.5}}
    recs = decide_gates(1, scores, 0.2, "cognizance", STRONG)
    scores["A"]["x"] = 0.0
    assert recs["A"].scores["x"] == 0.8


# --- standard errors -------------------------------------------------------------------------------

def test_mean_standard_error_by_hand():
    # [1, 0, 1, 0]: mean 0.5, sample variance 4 * 0.25 / 3 = 1/3, SE = sqrt(1/3 / 4)
    assert mean_standard_error([1.0, 0.0, 1.0, 0.0]) == pytest.approx(math.sqrt(1 / 12))
    # [0.5, 0.25, 0.75] (avg@4 per question): mean 0.5, sample variance 0.0625, SE = sqrt(0.0625 / 3)
    assert mean_standard_error([0.5, 0.25, 0.75]) == pytest.approx(math.sqrt(0.0625 / 3))
    assert mean_standard_error([0.3, 0.3, 0.3]) == 0.0
    assert mean_standard_error([1.0]) is None and mean_standard_error([]) is None


def test_gap_uncertainty_is_zero_when_no_resample_can_change_delta():
    # identical students: delta is 0 in every resample
    same = {"A": {"x": [1.0, 0.0, 0.5], "y": [0.0, 1.0]}, "B": {"x": [1.0, 0.0, 0.5], "y": [0.0, 1.0]}}
    u = gap_uncertainty(same)
    assert u.delta_se == {"A": 0.0, "B": 0.0} and u.n_items == {"x": 3, "y": 2}
    # A always right, B always wrong: delta_B = 1 in every resample
    split = {"A": {"x": [1.0, 1.0, 1.0]}, "B": {"x": [0.0, 0.0, 0.0]}}
    assert gap_uncertainty(split).delta_se == {"A": 0.0, "B": 0.0}
    assert gap_uncertainty(split).score_se == {"A": {"x": 0.0}, "B": {"x": 0.0}}


def test_gap_uncertainty_matches_the_standard_error_where_delta_is_linear():
    # A answers every question right, so s* = 1 and delta_B = 1 - s_B: its SE is the SE of B's mean, which
    # the bootstrap estimates with the population sd (n rather than n - 1)
    b = [1.0, 0.0, 0.5, 0.25, 1.0, 0.0, 0.75, 0.5, 0.0, 1.0, 0.25, 0.5]
    n = len(b)
    u = gap_uncertainty({"A": {"x": [1.0] * n}, "B": {"x": b}})
    expected = mean_standard_error(b) * math.sqrt((n - 1) / n)
    assert u.delta_se["B"] == pytest.approx(expected, rel=0.08)   # 1000 resamples: ~2% Monte Carlo error
    assert u.delta_se["A"] == 0.0 and u.score_se["B"]["x"] == pytest.approx(mean_standard_error(b))


def test_gap_uncertainty_of_a_coin_flip():
    # B never answers; A answers one of two questions: a resample holds A's question with prob 3/4, then
    # delta_B = 1, otherwise s* = 0 and delta_B = 0. delta_B is Bernoulli(3/4): SE = sqrt(3/16) = 0.433
    u = gap_uncertainty({"A": {"x": [1.0, 0.0]}, "B": {"x": [0.0, 0.0]}})
    assert u.delta_se["B"] == pytest.approx(math.sqrt(3 / 16), abs=0.03)


def test_gap_uncertainty_is_fixed_by_its_seed_and_undefined_below_two_questions():
    scores = {"A": {"x": [1.0, 0.0, 0.5, 1.0], "y": [0.0, 1.0, 1.0]}, "B": {"x": [0.0, 0.5, 0.5, 1.0], "y": [1.0, 0.0, 0.0]}}
    assert gap_uncertainty(scores) == gap_uncertainty(scores)
    assert gap_uncertainty(scores, seed=1) != gap_uncertainty(scores, seed=2)
    one = gap_uncertainty({"A": {"x": [1.0], "y": [0.0, 1.0]}, "B": {"x": [0.0], "y": [1.0, 1.0]}})
    assert one.delta_se == {"A": None, "B": None} and one.score_se["A"] == {"x": None, "y": 0.5}
    with pytest.raises(ValueError, match="same questions"):
        gap_uncertainty({"A": {"x": [1.0, 0.0]}, "B": {"x": [1.0, 0.0, 1.0]}})


def test_decide_gates_carries_the_standard_errors():
    items = {"A": {"x": [1.0, 1.0, 0.5, 0.7], "y": [0.2, 0.6]}, "B": {"x": [0.6, 0.4, 0.8, 0.6], "y": [0.5, 0.5]}}
    scores = {s: {d: sum(v) / len(v) for d, v in per.items()} for s, per in items.items()}
    u = gap_uncertainty(items, seed=3)
    recs = decide_gates(1, scores, 0.2, "cognizance", STRONG, uncertainty=u)
    for s in ("A", "B"):
        d = recs[s].to_dict()
        assert d["delta_se"] == u.delta_se[s] and d["score_se"] == u.score_se[s]
        assert json.loads(json.dumps(d)) == d
    assert f"SE {u.delta_se['B']:.2f}" in recs["B"].reason
    plain = decide_gates(1, scores, 0.2, "cognizance", STRONG)
    assert plain["A"].delta_se is None and plain["A"].score_se is None
    assert plain["A"].decision == recs["A"].decision   # the SE is shown, it does not decide
