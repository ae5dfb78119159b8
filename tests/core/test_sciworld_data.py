"""The science world: determinism, held-out splits, gold answers recomputed independently, hints that
never state the answer (also through the anchoring classifier and leak scrubber)."""

import re

import pytest

from opcod_core.anchoring import classify_feedback
from opcod_core.data import DataSpec, is_correct, load_dataset
from opcod_core.data.sciworld import SCIWORLD_DOMAINS, sciworld_corpus, sciworld_items, sciworld_split

# Independent reference values (periodic table groups), not imported from the module under test.
GROUP_VALENCE = {**{e: 1 for e in ("H", "Li", "Na", "K")}, **{e: 2 for e in ("Be", "Mg", "Ca")},
                 **{e: 3 for e in ("B", "Al")}, **{e: 4 for e in ("C", "Si")}, **{e: 5 for e in ("N", "P")},
                 **{e: 6 for e in ("O", "S")}, **{e: 7 for e in ("F", "Cl", "Br", "I")}}
MULTIPLY = {"force", "momentum", "work", "distance", "impulse", "voltage", "electric_power", "charge", "energy"}
DIVIDE = {"speed", "acceleration", "power", "density", "pressure", "current", "resistance"}


def expected_value(item) -> int:
    question = item.question.split(" Options:")[0]
    if item.domain == "chemistry":
        formula = re.search(r"one (\S+) unit", question).group(1)
        return sum(GROUP_VALENCE[el] * int(n or 1) for el, n in re.findall(r"([A-Z][a-z]?)(\d?)", formula))
    x, y = (int(v) for v in re.findall(r"\b\d+\b", question))
    rel = item.meta["relation"]
    assert rel in MULTIPLY | DIVIDE
    if rel in MULTIPLY:
        return x * y
    assert x % y == 0
    return x // y


@pytest.fixture(scope="module")
def items():
    return sciworld_items()


def test_every_domain_present_and_sizes(items):
    by = {d: [it for it in items if it.domain == d] for d in SCIWORLD_DOMAINS}
    assert len(by["chemistry"]) == 7 + 13 * 6 * 4
    assert len(by["physics"]) == 10 * 64 and len(by["electricity"]) == 6 * 64


def test_deterministic_and_seed_changes_choice_order():
    a, b = sciworld_items(seed=3), sciworld_items(seed=3)
    assert [it.to_dict() for it in a] == [it.to_dict() for it in b]
    c = sciworld_items(seed=4)
    assert [it.id for it in a] == [it.id for it in c]
    assert any(x.question != y.question for x, y in zip(a, c))  # option order


def test_gold_is_correct_independently(items):
    for it in items:
        value = expected_value(it)
        assert it.answer_type == "numeric" and it.gold == str(value), it.id
        options = [int(v) for v in re.search(r"Options: ([\d, ]+)\.$", it.question).group(1).split(", ")]
        assert len(set(options)) == 4 and value in options and all(v > 0 for v in options), it.id
        # the worked answer verifies as correct, and a distractor does not
        assert is_correct(it, f"{it.meta['worked']} Answer: {value}")[1]
        wrong = next(v for v in options if v != value)
        assert not is_correct(it, f"{it.meta['worked']} Answer: {wrong}")[1]
        assert it.meta["worked"].endswith(f"= {value}.")


def test_single_digit_inputs(items):
    for it in items:
        if it.domain == "chemistry":
            assert all(int(n or 1) <= 2 for n in re.findall(r"[A-Z][a-z]?(\d?)", it.meta["formula"]))
        else:
            x, y = it.meta["inputs"]
            small = (x, y) if it.meta["relation"] in MULTIPLY else (y, expected_value(it))
            assert all(2 <= v <= 9 for v in small), it.id


def test_hint_names_concept_and_never_states_answer(items):
    for it in items:
        concept, hint, value = it.meta["concept"], it.meta["hint"], it.meta["answer_value"]
        assert concept.lower() in it.question.split(" Options:")[0].lower()
        assert not re.search(rf"(?<!\d){value}(?!\d)", hint), (it.id, hint)
        assert all(f in hint for f in it.meta["facts"])
        v = classify_feedback(f"<concept>{concept}</concept> {hint}", it.question, gold=it.gold,
                              choices=None, labels=None)
        assert v.category == "kept" and not v.redactions, (it.id, v)
        assert v.sanitised == f"Concept: {concept}. {hint}"


def test_scrubber_would_catch_a_leaking_hint(items):
    it = next(x for x in items if x.domain == "physics")
    leaky = f"<concept>{it.meta['concept']}</concept> {it.meta['hint']} The result is {it.meta['answer_value']}."
    v = classify_feedback(leaky, it.question, gold=it.gold, choices=None, labels=None)
    assert v.category == "kept" and v.redactions and str(it.meta["answer_value"]) not in v.sanitised.split()


def test_splits_hold_out_formulas_and_number_combinations():
    ds = load_dataset(DataSpec(source="sciworld", domains=SCIWORLD_DOMAINS, split_seed=1))
    for d in SCIWORLD_DOMAINS:
        groups = {s: {it.meta["group"] for it in ds.get(d, s)} for s in ("train", "validation", "test")}
        assert all(groups.values())
        assert not groups["train"] & groups["test"] and not groups["train"] & groups["validation"]
        assert not groups["validation"] & groups["test"]
        # stratified: every relation occurs in every split
        rels = {s: {it.meta["relation"] for it in ds.get(d, s)} for s in groups}
        assert rels["train"] == rels["validation"] == rels["test"]
    chem_test = {it.meta["formula"] for it in ds.get("chemistry", "test")}
    chem_train = {it.meta["formula"] for it in ds.get("chemistry", "train")}
    assert chem_test and not chem_test & chem_train
    other = load_dataset(DataSpec(source="sciworld", domains=("physics",), split_seed=2))
    assert {it.id for it in other.get("physics", "test")} != {it.id for it in ds.get("physics", "test")}


def test_cap_keeps_every_split_and_domain_order():
    items = sciworld_items(("physics", "chemistry"))
    ds = sciworld_split(items, (0.6, 0.2, 0.2), seed=0, domains=("physics", "chemistry"), max_items_per_domain=50)
    assert ds.domains == ["physics", "chemistry"]
    assert [len(ds.get("physics", s)) for s in ("train", "validation", "test")] == [30, 10, 10]


def test_unknown_domain_and_corpus():
    with pytest.raises(ValueError, match="unknown sciworld domain"):
        sciworld_items(["materials"])
    corpus = sciworld_corpus()
    assert "valence electrons" in corpus and "81" in corpus


def test_partial_split_knows_a_share_of_units():
    from opcod_core.warmup import partial_split

    data = load_dataset(DataSpec(source="sciworld", domains=("chemistry", "physics")))
    chem = data.get("chemistry", "train")
    elements = {u for it in chem for u in it.meta["units"]}
    assert all(u.startswith("element:") for u in elements) and len(elements) == 19
    known, rest, units = partial_split(chem, 0.4, "k")
    assert len(units) == round(0.4 * 19) and set(units) <= elements
    assert known and rest and len(known) + len(rest) == len(chem)
    # an item is known exactly when every element of its formula is known
    for it in known:
        assert set(it.meta["units"]) <= set(units)
    for it in rest:
        assert not set(it.meta["units"]) <= set(units)
    assert partial_split(chem, 0.4, "k") == (known, rest, units)          # seeded
    assert partial_split(chem, 0.4, "other")[2] != units
    phys = data.get("physics", "train")
    k1, r1, u1 = partial_split(phys, 0.9, "k")
    assert len(u1) == 9 and {it.meta["relation"] for it in r1} == {next(
        u.split(":")[1] for u in {x for it in phys for x in it.meta["units"]} if u not in u1)}
    assert partial_split(phys, 0.0, "k")[0] == [] and partial_split(phys, 1.0, "k")[1] == []
    with pytest.raises(ValueError, match="meta\\['units'\\]"):
        partial_split(load_dataset(DataSpec(source="builtin")).get("chemistry", "train"), 0.5, "k")
