"""Tutor routing among N peers: the three modes, seeded tie-breaking, no tutor, quarantine, the round
schedule (and that two peers keep today's direction order)."""

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from opcod_core.routing import Route, direction_numbers, rank_tutors, round_tutees, route, tie_key
from opcod_core.tasks import StepTask, task_list

PEERS = ("A", "B", "C", "D")
SCORES = {"A": {"chem": 0.9, "phys": 0.2}, "B": {"chem": 0.5, "phys": 0.8},
          "C": {"chem": 0.7, "phys": 0.6}, "D": {"chem": 0.3, "phys": 0.7}}
ALL = set(PEERS)
ROOT = Path(__file__).resolve().parents[2]


def _route(tutee="A", domain="chem", cognizant=ALL, scores=SCORES, **kw):
    kw.setdefault("seed", 0)
    kw.setdefault("round", 1)
    return route(PEERS, tutee, domain, cognizant, scores, **kw)


# --- best -------------------------------------------------------------------------------------------------
def test_best_picks_the_highest_score_on_the_domain_other_than_the_tutee():
    r = _route()                                           # A is best on chem but is the tutee
    assert r == Route("A", "chem", ("C",), (), "best", r.reason)
    assert "'C'" in r.reason and "chem" in r.reason
    assert _route(tutee="C").tutors == ("A",)
    assert _route(tutee="A", domain="phys").tutors == ("B",)


def test_best_only_considers_cognizant_peers():
    assert _route(cognizant={"A", "B", "D"}).tutors == ("B",)


def _tied_scores():
    return {"A": {"chem": 0.1}, "B": {"chem": 0.6}, "C": {"chem": 0.6}, "D": {"chem": 0.2}}


def test_ties_are_deterministic_and_depend_on_the_seed():
    picks = {}
    for seed in range(40):
        first = _route(scores=_tied_scores(), seed=seed).tutors
        assert _route(scores=_tied_scores(), seed=seed).tutors == first      # a pure function
        picks[seed] = first[0]
        assert picks[seed] in ("B", "C")                   # never the lower score D
    assert set(picks.values()) == {"B", "C"}               # the seed decides, neither always wins
    r = _route(scores=_tied_scores(), seed=3)
    assert "equal scores ordered by seed 3" in r.reason


def test_ties_depend_on_round_tutee_and_domain_too():
    keys = {tie_key(0, 1, "A", "chem", "B"), tie_key(0, 2, "A", "chem", "B"),
            tie_key(0, 1, "D", "chem", "B"), tie_key(0, 1, "A", "phys", "B"), tie_key(1, 1, "A", "chem", "B")}
    assert len(keys) == 5


def test_no_tie_means_the_seed_does_not_matter():
    assert {_route(seed=s).tutors for s in range(10)} == {("C",)}
    assert "equal scores" not in _route().reason


def test_tie_break_is_the_same_in_every_process():
    # Python's hash() of a str differs between processes: the tie order must not
    code = ("from opcod_core.routing import route\n"
            f"S = {_tied_scores()!r}\n"
            "print([route(list('ABCD'), 'A', 'chem', set('ABCD'), S, seed=s, round=1).tutors[0] for s in range(20)])")
    here = [_route(scores=_tied_scores(), seed=s).tutors[0] for s in range(20)]
    for hashseed in ("1", "2"):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT,
                             env={"PYTHONHASHSEED": hashseed, "PYTHONPATH": str(ROOT)})
        assert out.stdout.strip() == str(here)


def test_rank_tutors_best_first():
    assert rank_tutors(["B", "C", "D"], SCORES, "phys", seed=0, round=1, tutee="A") == ["B", "D", "C"]


# --- round_robin ------------------------------------------------------------------------------------------
def test_round_robin_rotates_in_fixed_order_by_question_index():
    got = [_route(tutee="B", mode="round_robin", index=i, scores={}).tutors for i in range(6)]
    assert got == [("A",), ("C",), ("D",), ("A",), ("C",), ("D",)]
    got = [_route(tutee="B", mode="round_robin", index=i, cognizant={"B", "D", "A"}, scores={}).tutors
           for i in range(3)]
    assert got == [("A",), ("D",), ("A",)]


# --- all ------------------------------------------------------------------------------------------------------
def test_all_orders_by_score_and_caps():
    assert _route(mode="all").tutors == ("C", "B", "D")
    assert _route(mode="all", max_tutors=2).tutors == ("C", "B")
    r = _route(mode="all", max_tutors=1)
    assert r.tutors == ("C",) and "max_tutors=1" in r.reason


def test_all_uses_the_same_tie_rule_as_best():
    for seed in range(10):
        best = _route(scores=_tied_scores(), seed=seed).tutors
        every = _route(scores=_tied_scores(), seed=seed, mode="all").tutors
        assert every[0] == best[0] and every[2] == "D"


# --- no tutor ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["best", "round_robin", "all"])
@pytest.mark.parametrize("cognizant", [set(), {"A"}])
def test_no_cognizant_peer_gives_an_empty_route_with_a_reason(mode, cognizant):
    r = _route(cognizant=cognizant, mode=mode)
    assert r.tutors == () and r.quarantined == ()
    assert "no cognizant peer other than 'A'" in r.reason


# --- quarantine ---------------------------------------------------------------------------------------------
def test_a_quarantined_best_tutor_writes_in_the_shadow_and_the_next_best_tutors():
    r = _route(quarantined={"C"})
    assert r.tutors == ("B",) and r.quarantined == ("C",)
    assert "not used" in r.reason


def test_a_quarantined_tutor_that_would_not_be_picked_is_not_generated():
    r = _route(quarantined={"D"})
    assert r.tutors == ("C",) and r.quarantined == ()


def test_every_candidate_quarantined_means_no_feedback_used():
    r = _route(cognizant={"A", "C"}, quarantined={"C"})
    assert r.tutors == () and r.quarantined == ("C",)
    assert "quarantined" in r.reason


def test_quarantine_in_round_robin_and_all():
    r = _route(tutee="B", mode="round_robin", index=1, quarantined={"C"}, scores={})
    assert r.quarantined == ("C",) and r.tutors == ("D",)       # rotation over A, D: index 1 -> D
    r = _route(mode="all", max_tutors=2, quarantined={"C"})
    assert r.quarantined == ("C",) and r.tutors == ("B", "D")


def test_a_non_cognizant_quarantined_peer_is_ignored():
    r = _route(cognizant={"A", "B"}, quarantined={"C"})
    assert r.tutors == ("B",) and r.quarantined == ()


# --- validation -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("peers, match", [(["A"], "peers"), ([f"p{i}" for i in range(9)], "peers"),
                                          (["A", "B", "A"], "duplicate"), (["A", ""], r"peers\[1\]"),
                                          ("AB", "peers")])
def test_peers_are_checked(peers, match):
    with pytest.raises(ValueError, match=match):
        route(peers, "A", "chem", set(), {}, seed=0, round=1)


def test_eight_peers_are_allowed():
    peers = [f"p{i}" for i in range(8)]
    scores = {p: {"chem": i / 10} for i, p in enumerate(peers)}
    assert route(peers, "p7", "chem", set(peers), scores, seed=0, round=1).tutors == ("p6",)


@pytest.mark.parametrize("kw, field", [
    ({"tutee": "Z"}, "tutee"), ({"mode": "fastest"}, "mode"), ({"cognizant": {"Z"}}, "cognizant"),
    ({"quarantined": {"Z"}}, "quarantined"), ({"max_tutors": 0}, "max_tutors"), ({"index": -1}, "index"),
    ({"seed": "0"}, "seed"), ({"scores": {"A": {"chem": 1.0}}}, r"scores\['B'\]\['chem'\]"),
    ({"scores": {**SCORES, "B": {"chem": float("nan")}}}, r"scores\['B'\]\['chem'\]"),
])
def test_inputs_are_checked(kw, field):
    with pytest.raises(ValueError, match=field):
        _route(**kw)


def test_route_round_trip():
    r = _route(quarantined={"C"})
    assert Route.from_dict(json.loads(json.dumps(r.to_dict()))) == r


# --- the round schedule -------------------------------------------------------------------------------------
def test_round_tutees_one_direction_per_peer_in_fixed_order():
    assert round_tutees(PEERS) == ["A", "B", "C", "D"]
    assert round_tutees(PEERS, {"A", "C"}) == ["A", "B", "C", "D"]
    # tutor_first: tutees that have a cognizant peer other than themselves run first, order kept
    assert round_tutees(PEERS, {"C"}, tutor_first=True) == ["A", "B", "D", "C"]
    assert round_tutees(PEERS, set(), tutor_first=True) == ["A", "B", "C", "D"]
    assert direction_numbers(PEERS, ["A", "B", "D", "C"]) == [1, 2, 4, 3]


def test_two_peers_keep_todays_slot_order():
    # today: each round runs slot 1 then slot 2, and without a recorded order slot i is direction i
    steps = [t for t in task_list(2, 3) if isinstance(t, StepTask) and t.round == 1]
    assert [t.slot for t in steps] == [1, 1, 1, 2, 2, 2]
    assert direction_numbers(["s1", "s2"], round_tutees(["s1", "s2"])) == [1, 2]


@pytest.mark.parametrize("tutor_first", [False, True])
@pytest.mark.parametrize("decisions", [("tutor", "tutor"), ("tutor", "silent"), ("silent", "tutor"),
                                       ("silent", "silent")])
def test_two_peers_match_the_trainers_direction_order(tutor_first, decisions):
    from opcod_core.trainer import Trainer    # imports torch: only this test pays for it

    names = ["s1", "s2"]
    stub = SimpleNamespace(config=SimpleNamespace(schedule=SimpleNamespace(tutor_first=tutor_first)),
                           names=names, gates={n: {"decision": d} for n, d in zip(names, decisions)})
    today = Trainer._direction_order(stub)
    cognizant = {n for n, d in zip(names, decisions) if d == "tutor"}
    assert direction_numbers(names, round_tutees(names, cognizant, tutor_first)) == today
    no_order = SimpleNamespace(orders={}, names=names)
    assert [Trainer.direction_of(no_order, 1, slot) for slot in (1, 2)] == [1, 2]   # no recorded order: [1, 2]
