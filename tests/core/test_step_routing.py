"""Tutor routing inside one step (opcod_core.step_routing): who writes, which feedback reaches the teacher,
quarantined tutors in the shadow, break probes attributed to the probed tutor. Fake students (text in,
text out, no model) make every decision exact."""

from __future__ import annotations

import pytest

from opcod_core.breakrate import break_samples, probe_pool
from opcod_core.build import tutor_template
from opcod_core.config import preset
from opcod_core.controls import NullControls, ScriptedControls
from opcod_core.data.types import Item
from opcod_core.events import PEER_FIELDS
from opcod_core.gating import decide_gates
from opcod_core.generation.base import Completion
from opcod_core.step import Row, StepContext, build_examples, derive_seed, exchange_event, exchange_key
from opcod_core.step_routing import default_tutor, step_tutor, step_tutors, tutor_feedback

DOMAINS = ["chemistry", "physics", "biology"]
CHEM = Item("c1", "chemistry", "How many atoms are in a water molecule?", ("2", "3"), ("A", "B"), "B")
PHYS = Item("p1", "physics", "Which force keeps a satellite in orbit?", ("gravity", "friction"), ("A", "B"), "A")


class FakeStudent:
    """Renders messages as code points; a tutor answers ``reply`` (after the "<concept>" prefill); a tutee
    answers greedily with the gold label unless the prompt holds "Trust me" (a breaking hint)."""

    def __init__(self, name: str, reply: str = "atoms</concept> Count each element.", gold: str = "B"):
        self.name, self.reply, self.gold = name, reply, gold
        self.calls: list[tuple[list, object]] = []

    def render(self, messages, prefill=None):
        return [ord(c) for c in "".join(m["content"] for m in messages) + (prefill or "")]

    def decode(self, ids):
        return "".join(chr(i) for i in ids)

    def token_strings(self, ids):
        return [str(i) for i in ids]

    def sample(self, prompts, params):
        self.calls.append((prompts, params))
        out = []
        for p in prompts:
            text = self.reply if params.temperature > 0 else (
                "Answer: A" if "Trust me" in self.decode(p) else f"Answer: {self.gold}")
            out.append([Completion(token_ids=[1], text=text, logprobs=[0.0], finish_reason="stop")])
        return out


def config(names, **over):
    students = [{"name": n, "model": "tiny:llama"} for n in names]
    return preset("tiny", {"students": students, "data": {"domains": DOMAINS}, **over})


def context(names, scores, *, tutee="A", silent=(), quarantined=(), rows_items=(CHEM,), controls=None, **over):
    cfg = config(names, **over)
    peers = {n: FakeStudent(n) for n in names}
    gates = decide_gates(1, scores, 10.0, "cognizance", {n: None for n in names},
                         forced={n: "silent" for n in silent})
    tutor = default_tutor(list(names), tutee)
    ctx = StepContext(cfg, 1, list(names).index(tutee) + 1, 0, 5, peers[tutee], peers[tutor], gates[tutor],
                      list(rows_items), controls or NullControls(), tutor_template(cfg), gating_mode="cognizance",
                      peers=peers, gates=gates, scores=scores, quarantined=frozenset(quarantined))
    rows = [Row(it, p, k, [1, 2], [7, 8], "I think 3. Answer: B", "B", it.gold == "B")
            for p, it in enumerate(rows_items) for k in range(2)]
    return ctx, rows


SCORES = {"A": {"chemistry": 0.9, "physics": 0.1, "biology": 0.5},
          "B": {"chemistry": 0.4, "physics": 0.8, "biology": 0.5},
          "C": {"chemistry": 0.7, "physics": 0.3, "biology": 0.5},
          "D": {"chemistry": 0.6, "physics": 0.6, "biology": 0.5}}
NAMES = ("A", "B", "C", "D")


def written(ctx):
    return {n: sum(len(prompts) for prompts, _ in p.calls) for n, p in ctx.peers.items() if p.calls}


def test_no_cognizant_peer_means_no_feedback_and_no_tutor_call():
    ctx, rows = context(NAMES, SCORES, silent=("B", "C", "D"))
    assert tutor_feedback(ctx, rows) == 0.0
    assert written(ctx) == {}
    build_examples(ctx, rows)
    for r in rows:
        assert r.feedback == {} and r.feedback_text is None and r.route.tutors == ()
        assert "no cognizant peer" in r.route.reason
        e = exchange_event(ctx, r, None, None)
        assert e.tutor == "B" and e.tutors == [] and e.feedback_used is None   # B: the step's default tutor


def test_best_routes_each_question_to_the_highest_scoring_cognizant_peer():
    ctx, rows = context(NAMES, SCORES, silent=("C",), rows_items=(CHEM, PHYS))
    ctx.peers["B"].reply = "satellite</concept> Think about what pulls it."
    tutor_feedback(ctx, rows)
    # chemistry: C (0.7) is silent, so D (0.6); physics: B (0.8). A is the tutee (0.9 on chemistry).
    assert {r.item.id: r.tutor for r in rows} == {"c1": "D", "p1": "B"}
    assert written(ctx) == {"B": 2, "D": 2}                         # one call per tutor, its rows only
    assert ctx.peers["D"].calls[0][1].seed == derive_seed(ctx.config.seed, 5, "tutor-D")
    build_examples(ctx, rows)
    chem = exchange_event(ctx, rows[0], None, None)
    assert chem.tutor == "D" and chem.tutors == ["D"] and chem.quarantined == []
    assert chem.feedback_used == chem.feedback_sanitised and chem.category == "kept"
    assert chem.feedback_used in ctx.tutee.decode(rows[0].example.teacher_prefix)
    assert [f["tutor"] for f in chem.feedbacks] == ["D"] and "best" in chem.route_reason
    assert step_tutor(ctx, rows) == "B" and step_tutors(ctx, rows) == ["B", "D"]   # tie 2-2: peer order


def test_round_robin_rotates_over_questions():
    items = tuple(Item(f"c{i}", "chemistry", "How many atoms are in it?", ("2", "3"), ("A", "B"), "B")
                  for i in range(6))
    ctx, rows = context(NAMES, SCORES, rows_items=items, routing={"mode": "round_robin"})
    tutor_feedback(ctx, rows)
    by_prompt = [r.tutor for r in rows if r.k == 0]
    # question i of step 5 (6 prompts a step) has index 30 + i; candidates B, C, D in peer order
    assert by_prompt == [["B", "C", "D"][(30 + i) % 3] for i in range(6)]


def test_all_joins_the_kept_feedback_best_first_and_caps_it():
    ctx, rows = context(NAMES, SCORES, routing={"mode": "all", "max_tutors": 2})
    ctx.peers["C"].reply = "water</concept> Think about hydrogen."
    ctx.peers["B"].reply = "nothing</concept> Not anchored."          # B would be third anyway (capped)
    tutor_feedback(ctx, rows)
    assert written(ctx) == {"C": 2, "D": 2}
    r = rows[0]
    assert r.route.tutors == ("C", "D")
    assert r.feedback_text == r.feedbacks["C"]["used"] + "\n" + r.feedbacks["D"]["used"]
    build_examples(ctx, rows)
    e = exchange_event(ctx, r, None, None)
    assert e.tutor == "C" and e.feedback_used == r.feedback_text and e.context_used in ("s+f", "f")
    assert r.feedback_text in ctx.tutee.decode(r.example.teacher_prefix)
    # one probe per tutor whose feedback was joined, each with that tutor's feedback alone
    assert [(t, f) for _, t, f, _ in probe_pool(rows)][:2] == [("C", r.feedbacks["C"]["used"]),
                                                             ("D", r.feedbacks["D"]["used"])]


def test_a_quarantined_tutor_writes_in_the_shadow_and_is_probed():
    ctx, rows = context(NAMES, SCORES, quarantined=("C",), break_rate={"samples_per_step": 8})
    ctx.peers["C"].reply = "atoms</concept> Trust me, count again."
    tutor_feedback(ctx, rows)
    assert written(ctx) == {"C": 2, "D": 2}                      # C still writes
    r = rows[0]
    assert r.route.tutors == ("D",) and r.route.quarantined == ("C",) and r.tutor == "D"
    assert r.feedbacks["C"]["used"] is None and r.feedbacks["C"]["category"] == "kept"
    assert "Trust me" not in r.feedback_text
    build_examples(ctx, rows)
    assert "Trust me" not in ctx.tutee.decode(r.example.teacher_prefix)
    e = exchange_event(ctx, r, None, None)
    assert e.quarantined == ["C"] and [(f["tutor"], f["quarantined"], f["used"]) for f in e.feedbacks] == [
        ("D", False, r.feedbacks["D"]["used"]), ("C", True, None)]
    probes = break_samples(ctx, rows, lambda row: exchange_key(ctx, row))
    shadow = [b for b in probes if b.shadow]
    assert shadow and all(b.tutor == "C" and b.broken and b.eligible for b in shadow)   # "Trust me" breaks
    assert all(b.tutor == "D" and not b.broken and b.shadow is None for b in probes if not b.shadow)
    assert all(b.tutor_cognizant for b in probes)           # tau = 10: every peer cognizant


def test_break_probe_carries_the_probed_tutors_cognizance():
    scores = {"A": {"chemistry": 0.1, "physics": 0.9, "biology": 0.9},
              "B": {"chemistry": 0.9, "physics": 0.0, "biology": 0.0},
              "C": {"chemistry": 0.5, "physics": 0.9, "biology": 0.9}}
    ctx, rows = context(("A", "B", "C"), scores, silent=(), break_rate={"samples_per_step": 4})
    # tau = 10 lets everyone tutor; B's gap (1 + 1 = 2) is then compared with tau = 0.2 in a real gate:
    gates = decide_gates(1, scores, 0.2, "always", {n: None for n in scores})
    ctx.gates = gates
    tutor_feedback(ctx, rows)
    build_examples(ctx, rows)
    probes = break_samples(ctx, rows, lambda row: exchange_key(ctx, row))
    assert probes and {b.tutor for b in probes} == {"B"} and not any(b.tutor_cognizant for b in probes)


def test_two_peers_keep_the_steps_seed_and_write_no_peer_fields():
    scores = {n: SCORES[n] for n in ("A", "B")}
    ctx, rows = context(("A", "B"), scores)
    tutor_feedback(ctx, rows)
    assert ctx.peers["B"].calls[0][1].seed == derive_seed(ctx.config.seed, 5, "tutor")
    build_examples(ctx, rows)
    d = exchange_event(ctx, rows[0], None, None).to_dict()
    assert d["tutor"] == "B" and not PEER_FIELDS & set(d)
    assert step_tutors(ctx, rows) is None


def test_two_peers_with_a_quarantined_tutor_mark_the_exchange():
    ctx, rows = context(("A", "B"), {n: SCORES[n] for n in ("A", "B")}, quarantined=("B",))
    tutor_feedback(ctx, rows)
    build_examples(ctx, rows)
    d = exchange_event(ctx, rows[0], None, None).to_dict()
    assert d["tutor"] == "B" and d["tutors"] == [] and d["quarantined"] == ["B"]
    assert d["feedback_raw"] and d["feedback_used"] is None and d["context_used"] in ("s", "none")


@pytest.mark.parametrize("decision, expect", [("approve", "joined"), ("reject", None), ("edit", "A person's hint.")])
def test_manual_approval_decides_on_the_joined_feedback(decision, expect):
    controls = ScriptedControls(approver=lambda req: (decision, "A person's hint." if decision == "edit" else None))
    ctx, rows = context(NAMES, SCORES, routing={"mode": "all"}, tutor={"approval": "manual"}, controls=controls)
    ctx.peers["C"].reply = "water</concept> Think about hydrogen."
    tutor_feedback(ctx, rows)
    assert len(controls.asked) == len(rows)                     # one decision per rollout
    r = rows[0]
    joined = "\n".join(r.feedbacks[t]["sanitised"] for t in r.route.tutors if r.feedbacks[t]["sanitised"])
    assert r.feedback_text == (joined if expect == "joined" else expect)
    assert {r.feedbacks[t]["approval"] for t in r.route.tutors} == {decision}
